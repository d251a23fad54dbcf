//! `opptak disclose`: a disclosure package of a call or a conversation for
//! an authority or Finansklagenemnda (R10), encrypted to the recipient's age
//! key.

use anyhow::{bail, Result};
use opptak::config::Config;
use opptak_domain::model::CallId;
use std::path::PathBuf;

/// Disclosure package for an authority or Finansklagenemnda (R10): the
/// call's recording, facts and retention history — or, given a conversation
/// id, the conversation's best copy (securities archive, advisor record,
/// customer's copy) with its facts and retention — encrypted to the
/// recipient's age key.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// A call id, or a conversation id.
    call_id: String,
    /// The receiving authority or board (e.g. "Finansklagenemnda").
    #[arg(long = "to")]
    to: String,
    /// The recipient's age X25519 public key (age1…).
    #[arg(long)]
    recipient_key: String,
    /// The case reference.
    #[arg(long)]
    case: String,
    /// Who discloses (kept with the disclosure).
    #[arg(long)]
    by: String,
    /// Why (the legal order, the complaint case, ...).
    #[arg(long)]
    reason: String,
    /// The package to write (mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    let out = args.out;
    let req = opptak_compliance::disclose::Request {
        call_id: CallId::parse(&args.call_id)?,
        recipient: args.to,
        recipient_key: args.recipient_key,
        case_ref: args.case,
        disclosed_by: args.by,
        reason: args.reason,
    };
    opptak_compliance::disclose::validate(&req)?;
    if out.exists() {
        bail!(
            "{} exists: refusing to overwrite it; choose another --out",
            out.display()
        );
    }
    let edges = super::reader_edges(config).await?;
    let pkg = opptak_compliance::disclose::disclose(&edges.compliance(), &req, &out, &mut |s| super::progress_line(s))
        .await?;
    super::progress_line("");
    print!("{}", opptak_compliance::disclose::receipt(&pkg, &req, &out));
    Ok(())
}
