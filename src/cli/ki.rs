//! `opptak ki`: where KI calls stand (transcription pending, draft pending,
//! drafted, opted out), without content; `opptak ki show`: one call's
//! transcript, draft and approved summary for a signed-in user, decided and
//! audited by the review service's rules (`opptak_review::web::reader`).

use anyhow::{Context, Result};
use opptak::app::Edges;
use opptak::config::Config;
use opptak_domain::model::CallId;

/// Where KI calls stand: transcription-pending, draft-pending, drafted, opted out.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// One call (default: the most recent calls).
    call_id: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only calls still waiting for a transcript or a draft.
    #[arg(long)]
    pending: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// One call's transcript, draft and approved summary, as the review
    /// service's call page shows them to the signed-in user: the same role
    /// rules, the same audit entry (transcript.read), refusals included.
    Show {
        call_id: String,
        /// A local user (opptak users); the password is read from standard input.
        #[arg(long)]
        by: String,
        /// Why you read it (compliance, as in the web's reason form): at least 10 characters.
        #[arg(long)]
        reason: Option<String>,
        /// The reason's category: complaint, authority_request, subject_access,
        /// finansklagenemnda, legal_claim, internal_control or quality_control.
        #[arg(long)]
        category: Option<String>,
        /// The case number (required except for internal_control and quality_control).
        #[arg(long = "case")]
        case_ref: Option<String>,
    },
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    use opptak_ki::summarize::{ki_state, KiState};
    let Args {
        command,
        call_id,
        limit,
        pending,
    } = args;
    if let Some(Command::Show {
        call_id,
        by,
        reason,
        category,
        case_ref,
    }) = command
    {
        let stated = (reason.is_some() || category.is_some() || case_ref.is_some()).then(|| {
            opptak_review::web::reader::StatedReason {
                category: category.unwrap_or_default(),
                case_ref: case_ref.unwrap_or_default(),
                text: reason.unwrap_or_default(),
            }
        });
        return show(config, &CallId::parse(&call_id)?, &by, stated).await;
    }
    let edges = Edges::open(config).await?;
    let ids: Vec<CallId> = match call_id {
        Some(id) => vec![CallId::parse(&id)?],
        None => edges
            .meta
            .list_calls(limit)
            .await?
            .into_iter()
            .filter(|r| r.facts.ki_active())
            .map(|r| r.facts.call_id)
            .collect(),
    };
    println!("{:<36} state", "call");
    for id in ids {
        let state = ki_state(&edges.meta, &id).await?;
        if pending && !matches!(state, KiState::TranscriptionPending | KiState::DraftPending) {
            continue;
        }
        let detail = match &state {
            KiState::OptedOut { by, shredded } => format!(
                " (by {by}; ki key {})",
                if *shredded { "shredded" } else { "not yet shredded" }
            ),
            KiState::TranscriptionPending => {
                " (the transcriber role finishes it when the speech server answers)".into()
            }
            KiState::DraftPending => " (the summarizer role finishes it when the model answers)".into(),
            _ => String::new(),
        };
        println!("{:<36} {}{detail}", id.to_string(), state.as_str());
    }
    Ok(())
}

/// `opptak ki show`: signs `by` in (password on standard input), then reads
/// as the call page does and prints the content.
async fn show(
    config: Config,
    call_id: &CallId,
    by: &str,
    stated: Option<opptak_review::web::reader::StatedReason>,
) -> Result<()> {
    let edges = super::reader_edges(config).await?;
    let review = edges.review();
    let password = super::password_from_stdin()?;
    let user = opptak_review::identity::Identity::open(&review)
        .await?
        .authenticate_any(by, &password, &format!("ki show {call_id}"))
        .await?;
    let reader = opptak_review::web::reader::CallReader::open(&review).await?;
    let c = reader
        .read(&user, call_id, stated.as_ref())
        .await
        .with_context(|| format!("{by} reading call {call_id}"))?;
    let facts = &c.call.facts;
    println!("call      {call_id}");
    println!("started   {}", super::format_time(facts.started_at_us));
    println!("advisor   {}", facts.advisor_id);
    println!("reason    {} (kept in the audit log)", c.reason);
    let approved = c
        .approved
        .as_ref()
        .and_then(|r| r["summary"].as_str().map(str::to_owned));
    println!();
    match &approved {
        Some(text) => println!("approved summary:\n{text}"),
        None => println!("approved summary: none"),
    }
    println!();
    match &c.draft {
        Some(d) => println!("draft ({}; topics {}):\n{}", d.source, d.topics.join(", "), d.summary),
        None => println!("draft: none (not written yet, or the KI data is gone)"),
    }
    for v in &c.versions {
        println!(
            "version {} {} by {} at {}{}",
            v.version,
            v.kind,
            v.author,
            super::format_time(v.at_us),
            v.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    println!();
    match &c.transcript {
        Some(segments) => {
            println!("transcript:");
            for s in segments {
                println!("[{:>7.1}-{:>7.1}] {:<8} {}", s.start_s, s.end_s, s.speaker, s.text);
            }
        }
        None => println!("transcript: none (not transcribed yet, or the KI data is gone)"),
    }
    Ok(())
}
