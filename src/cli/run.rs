//! `opptak run --roles ...`: the production entry point. Runs the chosen
//! roles in this process until SIGINT/SIGTERM, with the telemetry endpoint
//! up first; a role that ends on its own ends the process (non-zero) so its
//! supervisor restarts it.

use anyhow::{Context, Result};
use opptak::app::Edges;
use opptak::config::Config;

/// Run pipeline roles until SIGINT/SIGTERM (production).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Roles to run in this process.
    #[arg(long, value_delimiter = ',', default_value = "recorder")]
    roles: Vec<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Role {
    Recorder,
    /// Deletes expired artifacts and shreds their keys every retention.sweep_interval_s.
    Sweeper,
    /// Transcribes KI calls while they run and every finished KI call left
    /// without a transcript (needs ki.asr_url).
    Transcriber,
    /// Drafts a summary with topics of every transcribed KI call (ki.llm_url).
    Summarizer,
    /// The review service on web.listen: sign-in, queues, draft pages.
    Review,
    /// Conversations from the chat systems (opptak.messages.v1): kept,
    /// copied and shredded as the policy says.
    Messages,
    /// The SIPREC recording server on siprec.listen: SBC-forked calls over
    /// SIP and RTP become telephony events.
    Siprec,
}

impl Role {
    /// The `role` label of `opptak_role_up`.
    fn name(self) -> &'static str {
        match self {
            Role::Recorder => "recorder",
            Role::Sweeper => "sweeper",
            Role::Transcriber => "transcriber",
            Role::Summarizer => "summarizer",
            Role::Review => "review",
            Role::Messages => "messages",
            Role::Siprec => "siprec",
        }
    }
}

pub(crate) async fn run(config: Config, args: Args) -> Result<()> {
    let roles = args.roles;
    let otlp = (!config.telemetry.otlp_endpoint.trim().is_empty()).then(|| opptak_telemetry::otlp::OtlpConfig {
        endpoint: config.telemetry.otlp_endpoint.trim().to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        roles: roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(","),
        interval: std::time::Duration::from_millis(config.telemetry.otlp_interval_ms),
    });
    let export = super::init_tracing(config.log.format == "json", otlp);
    let result = run_roles(config, roles).await;
    if let Some(export) = export {
        // The spans of the last calls; bounded so a dead collector cannot hold the exit.
        export.shutdown(std::time::Duration::from_secs(5)).await;
    }
    result
}

pub(crate) async fn run_roles(config: Config, roles: Vec<Role>) -> Result<()> {
    // Up before the edges open: probes see a live process that is starting.
    let health = opptak::telemetry::Health::new();
    let telemetry = opptak::telemetry::start(&config.telemetry.listen, health.clone()).await;
    let edges = Edges::open(config).await?;
    let mut role_names: Vec<&'static str> = roles.iter().map(|r| r.name()).collect();
    role_names.sort_unstable();
    role_names.dedup();
    opptak::app::audit_policy_load(&edges, &role_names.join(",")).await?;
    // Only the roles' own topics: all its principal may be allowed to see.
    edges.ensure_topics(&role_names).await?;
    health.edges_open(&edges);
    let mut running = Vec::new();
    let mut sweepers = Vec::new();
    let mut conversations = Vec::new();
    let (mut transcribe, mut summarize) = (false, false);
    let mut web_servers = Vec::new();
    let mut siprec = Vec::new();
    for role in roles {
        match role {
            Role::Recorder => running.push(opptak::app::RunningRecorder::spawn(edges.recorder())),
            Role::Sweeper => sweepers.push(opptak::app::RunningSweeper::spawn(&edges)),
            Role::Messages => {
                conversations.push(opptak::app::RunningConversations::spawn(edges.messages_role().await?))
            }
            Role::Siprec => {
                let topic = opptak::topics::telephony_topic(&edges.config);
                let server =
                    opptak_siprec::server::start(&edges.config.siprec, edges.bus.clone(), &topic, edges.policy.clone())
                        .await?;
                siprec.push(server);
            }
            Role::Transcriber => transcribe = true,
            Role::Summarizer => summarize = true,
            Role::Review => {
                let listen = edges.config.web.listen.clone();
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("web.listen {listen}"))?;
                let router = opptak_review::web::router(&edges.review(), edges.config.web.secure_cookies).await?;
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tracing::info!(%listen, "review service listening");
                let up = opptak_telemetry::metrics().role_up("review");
                web_servers.push((
                    tx,
                    tokio::spawn(async move {
                        let _up = up;
                        opptak_review::web::serve(listener, router, async {
                            let _ = rx.await;
                        })
                        .await
                    }),
                ));
            }
        }
    }
    let mut ki = if transcribe || summarize {
        Some(opptak::app::RunningKi::spawn(&edges, transcribe, summarize, None).await?)
    } else {
        None
    };
    health.roles_started(role_names.clone());
    let bus_security = if edges.config.bus.url.starts_with("kafka://") {
        edges.config.kafka_options()?.security.describe()
    } else {
        "in-process".to_owned()
    };
    tracing::info!(bus = %edges.config.bus.url, %bus_security, blobs = %edges.blobs.describe(), metadata = %edges.meta.describe(), "opptak running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A role whose task ended on its own (its bus or store failed past its
    // retries) would leave a live process doing nothing: the process stops
    // the other roles and exits non-zero, so its supervisor (Kubernetes,
    // systemd) restarts it clean. Its uncommitted input is read again.
    // Except the KI roles beside a role that must go on (the legally required
    // recording above all): a KI backlog or failure never stops it. They are
    // restarted alone, with a back-off, up to KI_RESTARTS times in
    // KI_RESTART_WINDOW; past that the process exits as for any role.
    let keeps_running = role_names.iter().any(|r| !matches!(*r, "transcriber" | "summarizer"));
    let mut restarts: Vec<std::time::Instant> = Vec::new();
    let failed = loop {
        let role = tokio::select! {
            _ = tokio::signal::ctrl_c() => break None,
            _ = term.recv() => break None,
            role = first_role_down(&role_names) => role,
        };
        let now = std::time::Instant::now();
        restarts.retain(|t| now.duration_since(*t) < KI_RESTART_WINDOW);
        if !(keeps_running && matches!(role, "transcriber" | "summarizer") && restarts.len() < KI_RESTARTS) {
            break Some(role);
        }
        restarts.push(now);
        let backoff = std::time::Duration::from_secs(1 << restarts.len().min(5));
        tracing::error!(
            role,
            restart = restarts.len(),
            backoff_s = backoff.as_secs(),
            "KI role ended on its own: restarting it; the other roles go on"
        );
        if let Some(k) = ki.take() {
            k.stop().await;
        }
        tokio::time::sleep(backoff).await;
        match opptak::app::RunningKi::spawn(&edges, transcribe, summarize, None).await {
            Ok(k) => ki = Some(k),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the KI roles did not start again");
                break Some(role);
            }
        }
    };
    match failed {
        Some(role) => tracing::error!(role, "role ended on its own: stopping this process so it restarts"),
        None => tracing::info!("shutting down"),
    }
    for s in siprec {
        // Open sessions end with CallEnded before the process goes.
        s.stop().await;
    }
    for s in sweepers {
        s.stop().await;
    }
    for (stop, task) in web_servers {
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => tracing::info!("review service stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "review service stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "review service task failed"),
        }
    }
    if let Some(ki) = ki {
        ki.stop().await;
    }
    let mut recorder_error = None;
    for c in conversations {
        if let Err(e) = c.stop().await {
            tracing::error!(error = %format!("{e:#}"), "messages role stopped with an error");
            recorder_error = Some(e);
        }
    }
    for r in running {
        if let Err(e) = r.stop().await {
            tracing::error!(error = %format!("{e:#}"), "recorder stopped with an error");
            recorder_error = Some(e);
        }
    }
    if let Some(t) = telemetry {
        t.stop().await;
    }
    match failed {
        Some(role) => Err(anyhow::anyhow!(
            "the {role} role ended on its own (its error is logged above); exiting so the supervisor restarts \
             the process"
        )),
        None => recorder_error.map_or(Ok(()), Err),
    }
}

/// How many times the KI roles are restarted alone within [`KI_RESTART_WINDOW`].
const KI_RESTARTS: usize = 3;
const KI_RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Resolves with the first of `roles` whose `opptak_role_up` fell to 0.
async fn first_role_down(roles: &[&'static str]) -> &'static str {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if let Some(r) = roles
            .iter()
            .find(|r| opptak_telemetry::metrics().roles_running(&[**r]).is_err())
        {
            return r;
        }
    }
}
