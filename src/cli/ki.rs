//! `opptak ki`: where KI calls stand (transcription pending, draft pending, drafted, opted out).

use anyhow::Result;
use opptak::app::Edges;
use opptak::config::Config;
use opptak_domain::model::CallId;

/// Where KI calls stand: transcription-pending, draft-pending, drafted, opted out.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// One call (default: the most recent calls).
    call_id: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only calls still waiting for a transcript or a draft.
    #[arg(long)]
    pending: bool,
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    use opptak_ki::summarize::{ki_state, KiState};
    let Args {
        call_id,
        limit,
        pending,
    } = args;
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
