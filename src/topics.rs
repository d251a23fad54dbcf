//! The topics opptak uses: what each carries, who writes and who reads it,
//! and the retention the policy gives it. `opptak run` ensures the topics of
//! its roles; `opptak topics create|check` creates all of them, or reports
//! how the broker's differ. docs/security.md's ACL table is this table.
//!
//! A topic holds copies in transit, so it keeps them no longer than the
//! policy keeps what they are copies of (the telephony topic's call audio:
//! the recording's 24 h, not the broker's 7-day default). Kafka deletes
//! whole segments only, so each topic also rolls a segment every 1/24 of
//! its retention (at most daily): a record then outlives `retention.ms` by
//! at most that.

use crate::config::Config;
use opptak_bus::{Bus, BusError, TopicInfo, TopicSpec};
use opptak_domain::retention::{ArtifactKind, Policy};

/// One topic of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineTopic {
    /// The name without `bus.topic_prefix`.
    pub base: &'static str,
    /// The artifacts whose data (or news of them) the topic carries.
    pub carries: &'static [ArtifactKind],
    /// The principals that write it: `opptak run` roles, or `telephony`
    /// (the telephony system's producer).
    pub writers: &'static [&'static str],
    /// The roles that read it, each in its consumer group
    /// ([`PipelineTopic::groups`]); `operator`: `opptak deadletters`.
    pub readers: &'static [&'static str],
}

use ArtifactKind::{
    ApprovedSummary, ChatAdvisor, ChatAnalysis, ChatArchive, ChatCustomer, Draft, KiAudio, Recording, Transcript,
};

/// Every topic opptak creates, in pipeline order.
pub const TOPICS: [PipelineTopic; 7] = [
    PipelineTopic {
        base: "opptak.telephony.v1",
        carries: &[Recording],
        writers: &["telephony", "sweeper", "siprec"],
        readers: &["recorder", "transcriber"],
    },
    PipelineTopic {
        base: "opptak.recordings.v1",
        // News of the recording and of the KI copy the batch transcriber reads.
        carries: &[Recording, KiAudio],
        writers: &["recorder"],
        readers: &["transcriber"],
    },
    PipelineTopic {
        base: "opptak.deadletter.v1",
        // Originals sealed under the call's audio key (or the day's key).
        carries: &[Recording],
        writers: &["recorder", "messages"],
        readers: &["operator"],
    },
    PipelineTopic {
        base: "opptak.transcripts.v1",
        carries: &[Transcript],
        writers: &["transcriber"],
        readers: &["summarizer"],
    },
    PipelineTopic {
        base: "opptak.drafts.v1",
        carries: &[Draft],
        writers: &["summarizer"],
        readers: &[],
    },
    PipelineTopic {
        base: "opptak.summaries.v1",
        carries: &[ApprovedSummary],
        writers: &["review"],
        readers: &[],
    },
    PipelineTopic {
        base: "opptak.messages.v1",
        // Texts sealed by the chat system under a key that becomes the
        // conversation's chat-open key (shredded when it is written). The
        // topic is kept as briefly as the shortest copy: a day would do, but
        // a conversation may stay open for `messages.idle_end_s`.
        carries: &[ChatAnalysis, ChatAdvisor, ChatCustomer, ChatArchive],
        writers: &["chat"],
        readers: &["messages"],
    },
];

/// A topic whose data the policy does not keep at all still needs some
/// retention on Kafka: an hour.
const NOT_KEPT_MS: i64 = 3_600_000;
/// How long the messages topic keeps texts in transit: a day, as the
/// telephony topic keeps audio (the messages role must read them within it).
const IN_TRANSIT_MS: i64 = 86_400_000;
/// The longest segment: Kafka's default `segment.ms` is 7 days.
const MAX_SEGMENT_MS: i64 = 86_400_000;

impl PipelineTopic {
    pub fn name(&self, config: &Config) -> String {
        format!("{}{}", config.bus.topic_prefix, self.base)
    }

    /// The topic as opptak creates it under `policy`.
    pub fn spec(&self, config: &Config, policy: &Policy) -> TopicSpec {
        let retention = if self.carries.iter().any(|k| k.of_conversation()) {
            // Conversations are copied into their classes when they end; the
            // topic holds them in transit only, like the telephony topic.
            IN_TRANSIT_MS
        } else {
            policy
                .longest_keep(self.carries)
                .map_or(NOT_KEPT_MS, |p| p.shortest_ms())
        };
        TopicSpec {
            retention_ms: Some(retention),
            segment_ms: Some((retention / 24).clamp(60_000, MAX_SEGMENT_MS)),
            ..TopicSpec::new(&self.name(config), config.bus.partitions)
        }
    }

    /// Whether `role` reads or writes this topic.
    pub fn used_by(&self, role: &str) -> bool {
        self.writers.contains(&role) || self.readers.contains(&role)
    }
}

/// The telephony topic's full name (`bus.topic_prefix` applied).
pub fn telephony_topic(config: &Config) -> String {
    format!("{}opptak.telephony.v1", config.bus.topic_prefix)
}

/// The consumer group `opptak deadletters` reads in, with `-<pid>`
/// appended: a throwaway group that commits nothing, so every run reads the
/// topic from its start.
pub const DEADLETTERS_GROUP: &str = "opptak-deadletters";

/// The consumer group `role` reads topic `base` in (`recorder.group`,
/// `ki.*_group`, `messages.group`; [`DEADLETTERS_GROUP`] is a prefix);
/// `None` when it does not read it. The roles subscribe with these, and
/// docs/topics.md lists them (checked by tests/it/docs.rs).
pub fn group(config: &Config, role: &str, base: &str) -> Option<String> {
    let topic = TOPICS.iter().find(|t| t.base == base)?;
    if !topic.readers.contains(&role) {
        return None;
    }
    Some(match role {
        "recorder" => config.recorder.group.clone(),
        // Live while the call runs (`ki.live`), in its own group, so the
        // recorder's offsets never wait for speech recognition.
        "transcriber" if base == "opptak.telephony.v1" => config.ki.live_group.clone(),
        "transcriber" => config.ki.transcriber_group.clone(),
        "summarizer" => config.ki.summarizer_group.clone(),
        "messages" => config.messages.group.clone(),
        "operator" => DEADLETTERS_GROUP.to_owned(),
        _ => return None,
    })
}

/// The consumer groups a role reads in, one per topic it reads.
pub fn groups(config: &Config, role: &str) -> Vec<String> {
    let mut out: Vec<String> = TOPICS.iter().filter_map(|t| group(config, role, t.base)).collect();
    out.dedup();
    out
}

/// Every topic's spec.
pub fn specs(config: &Config, policy: &Policy) -> Vec<TopicSpec> {
    TOPICS.iter().map(|t| t.spec(config, policy)).collect()
}

/// The specs of the topics `roles` read or write: what a process running
/// them needs, and all its principal may be allowed to see.
pub fn specs_for_roles(config: &Config, policy: &Policy, roles: &[&str]) -> Vec<TopicSpec> {
    TOPICS
        .iter()
        .filter(|t| roles.iter().any(|r| t.used_by(r)))
        .map(|t| t.spec(config, policy))
        .collect()
}

/// Creates what is missing; existing topics are left as they are.
pub async fn ensure(bus: &dyn Bus, specs: &[TopicSpec]) -> Result<(), BusError> {
    for s in specs {
        bus.create_topic_with(s).await?;
    }
    Ok(())
}

/// How one topic differs from its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    Missing,
    Partitions {
        want: i32,
        have: i32,
    },
    /// `retention.ms` differs (longer keeps data past the policy, shorter
    /// loses it before its readers had it).
    Retention {
        want: i64,
        have: Option<i64>,
    },
    /// `segment.ms` longer than the spec's: records outlive the retention.
    Segment {
        max: i64,
        have: Option<i64>,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: &Option<i64>| v.map_or("unset".to_string(), |v| format!("{v} ms ({})", human(v)));
        match self {
            Drift::Missing => write!(f, "missing"),
            Drift::Partitions { want, have } => write!(f, "{have} partitions, expected {want}"),
            Drift::Retention { want, have } => {
                write!(f, "retention.ms {}, expected {want} ms ({})", ms(have), human(*want))
            }
            Drift::Segment { max, have } => {
                write!(
                    f,
                    "segment.ms {}, expected at most {max} ms ({})",
                    ms(have),
                    human(*max)
                )
            }
        }
    }
}

/// `86400000` as `24h`, `2592000000` as `30d`.
pub fn human(ms: i64) -> String {
    const H: i64 = 3_600_000;
    match ms {
        ms if ms % (24 * H) == 0 && ms >= 24 * H && ms / (24 * H) != 1 => format!("{}d", ms / (24 * H)),
        ms if ms % H == 0 && ms > 0 => format!("{}h", ms / H),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms => format!("{ms}ms"),
    }
}

/// How `have` differs from `want`; empty when it does not.
pub fn drift(want: &TopicSpec, have: Option<&TopicInfo>) -> Vec<Drift> {
    let Some(have) = have else { return vec![Drift::Missing] };
    let mut out = Vec::new();
    if have.partitions != want.partitions {
        out.push(Drift::Partitions {
            want: want.partitions,
            have: have.partitions,
        });
    }
    if let Some(w) = want.retention_ms {
        if have.retention_ms != Some(w) {
            out.push(Drift::Retention {
                want: w,
                have: have.retention_ms,
            });
        }
    }
    if let Some(max) = want.segment_ms {
        if have.segment_ms.is_none_or(|h| h > max) {
            out.push(Drift::Segment {
                max,
                have: have.segment_ms,
            });
        }
    }
    out
}

/// Each topic with how it drifted from its spec (empty: as specified).
pub async fn check(bus: &dyn Bus, specs: &[TopicSpec]) -> Result<Vec<(TopicSpec, Vec<Drift>)>, BusError> {
    let mut out = Vec::new();
    for s in specs {
        let have = bus.describe_topic(&s.name).await?;
        out.push((s.clone(), drift(s, have.as_ref())));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retention_follows_the_policy() {
        let config = Config::load_from(None, &[("OPPTAK__BUS__TOPIC_PREFIX".into(), "t.".into())]).unwrap();
        let policy = Policy::default_policy();
        let by_base = |base: &str| {
            let t = TOPICS.iter().find(|t| t.base == base).unwrap();
            t.spec(&config, &policy)
        };
        let telephony = by_base("opptak.telephony.v1");
        assert_eq!(telephony.name, "t.opptak.telephony.v1");
        assert_eq!(telephony.partitions, config.bus.partitions);
        assert_eq!(
            (telephony.retention_ms, telephony.segment_ms),
            (Some(86_400_000), Some(3_600_000))
        );
        assert_eq!(by_base("opptak.deadletter.v1").retention_ms, Some(86_400_000));
        // Conversations are in transit on their topic: a day, not their copies' years.
        assert_eq!(by_base("opptak.messages.v1").retention_ms, Some(86_400_000));
        assert_eq!(by_base("opptak.recordings.v1").retention_ms, Some(30 * 86_400_000));
        assert_eq!(by_base("opptak.transcripts.v1").retention_ms, Some(30 * 86_400_000));
        let summaries = by_base("opptak.summaries.v1");
        assert_eq!(summaries.retention_ms, Some(5 * 365 * 86_400_000));
        assert_eq!(summaries.segment_ms, Some(86_400_000));
        // The recorder's topics are its three; the review service's one.
        let names = |roles: &[&str]| -> Vec<String> {
            specs_for_roles(&config, &policy, roles)
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(
            names(&["recorder"]),
            [
                "t.opptak.telephony.v1",
                "t.opptak.recordings.v1",
                "t.opptak.deadletter.v1"
            ]
        );
        assert_eq!(names(&["review"]), ["t.opptak.summaries.v1"]);
        assert_eq!(names(&["sweeper"]), ["t.opptak.telephony.v1"]);
        // The messages role reads conversations and dead-letters what it refuses.
        assert_eq!(names(&["messages"]), ["t.opptak.deadletter.v1", "t.opptak.messages.v1"]);
        assert_eq!(specs(&config, &policy).len(), 7);
    }

    #[test]
    fn each_reader_reads_in_its_group() {
        let config = Config::load_from(None, &[("OPPTAK__KI__LIVE_GROUP".into(), "live-g".into())]).unwrap();
        // The live transcriber's offsets on the telephony topic are its own.
        assert_eq!(group(&config, "transcriber", "opptak.telephony.v1").unwrap(), "live-g");
        assert_eq!(
            group(&config, "transcriber", "opptak.recordings.v1").unwrap(),
            config.ki.transcriber_group
        );
        assert_eq!(
            group(&config, "recorder", "opptak.telephony.v1").unwrap(),
            "opptak-recorder"
        );
        assert_eq!(
            group(&config, "operator", "opptak.deadletter.v1").unwrap(),
            DEADLETTERS_GROUP
        );
        // Writers and strangers read in no group.
        assert_eq!(group(&config, "sweeper", "opptak.telephony.v1"), None);
        assert_eq!(group(&config, "recorder", "opptak.transcripts.v1"), None);
        assert_eq!(group(&config, "recorder", "opptak.nope.v1"), None);
        assert_eq!(groups(&config, "transcriber"), ["live-g", "opptak-transcriber"]);
        for t in &TOPICS {
            for r in t.readers {
                assert!(group(&config, r, t.base).is_some(), "{r} reads {} in no group", t.base);
            }
        }
    }

    #[test]
    fn drift_names_what_differs() {
        let want = TopicSpec {
            retention_ms: Some(86_400_000),
            segment_ms: Some(3_600_000),
            ..TopicSpec::new("x", 12)
        };
        let same = TopicInfo {
            partitions: 12,
            retention_ms: Some(86_400_000),
            segment_ms: Some(600_000),
        };
        assert!(drift(&want, Some(&same)).is_empty());
        assert_eq!(drift(&want, None), [Drift::Missing]);
        let broker_default = TopicInfo {
            partitions: 4,
            retention_ms: Some(604_800_000),
            segment_ms: Some(604_800_000),
        };
        let d = drift(&want, Some(&broker_default));
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "4 partitions, expected 12",
                "retention.ms 604800000 ms (7d), expected 86400000 ms (24h)",
                "segment.ms 604800000 ms (7d), expected at most 3600000 ms (1h)",
            ]
        );
    }
}
