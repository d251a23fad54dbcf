//! The embedded bus: partitioned in-process logs with consumer groups.
//!
//! Semantics follow Kafka where the pipeline depends on them: records are
//! partitioned by key (same hash as Kafka's Java client), order holds per
//! partition, a group resumes from its committed positions, and what was
//! polled but not committed is delivered again to the next subscriber of the
//! group. One subscriber per group at a time (single-process mode); a new
//! subscription takes over the group, as after a crash.

use crate::{partition_for, Bus, BusError, Outgoing, Position, Record, Subscription, TopicInfo, TopicSpec};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<Vec<Record>>>,
    /// What each topic was created with (the embedded bus keeps everything:
    /// its records live as long as the process).
    specs: HashMap<String, TopicSpec>,
    /// (group, topic, partition) → next offset to consume.
    committed: HashMap<(String, String, i32), i64>,
    /// group → generation; a newer subscription fences the older one.
    generations: HashMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    appended: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<(), BusError> {
        let (name, partitions) = (&spec.name, spec.partitions);
        if partitions < 1 {
            return Err(BusError::Config(format!("topic {name}: {partitions} partitions")));
        }
        let mut st = self.inner.lock();
        if !st.topics.contains_key(name) {
            st.topics.insert(name.clone(), vec![Vec::new(); partitions as usize]);
            st.specs.insert(name.clone(), spec.clone());
        }
        Ok(())
    }

    async fn describe_topic(&self, name: &str) -> Result<Option<TopicInfo>, BusError> {
        let st = self.inner.lock();
        Ok(st.specs.get(name).map(|s| TopicInfo {
            partitions: s.partitions,
            retention_ms: s.retention_ms,
            segment_ms: s.segment_ms,
        }))
    }

    async fn delete_topic(&self, name: &str) -> Result<(), BusError> {
        let mut st = self.inner.lock();
        st.topics.remove(name);
        st.specs.remove(name);
        st.committed.retain(|(_, t, _), _| t != name);
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(i32, i64), BusError> {
        let at = {
            let mut st = self.inner.lock();
            let parts = st
                .topics
                .get_mut(topic)
                .ok_or_else(|| BusError::Rejected(format!("unknown topic {topic}")))?;
            let partition = partition_for(key, parts.len() as i32);
            let log = &mut parts[partition as usize];
            let offset = log.len() as i64;
            log.push(Record {
                topic: topic.to_owned(),
                partition,
                offset,
                key: Some(Bytes::copy_from_slice(key)),
                payload: Bytes::copy_from_slice(payload),
                timestamp_ms: Some(now_ms()),
            });
            (partition, offset)
        };
        self.inner.appended.notify_waiters();
        Ok(at)
    }

    async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        for m in messages {
            self.publish(&m.topic, &m.key, &m.payload).await?;
        }
        Ok(())
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        let mut st = self.inner.lock();
        let mut cursors = Vec::new();
        for t in topics {
            let parts = st
                .topics
                .get(t)
                .ok_or_else(|| BusError::Config(format!("unknown topic {t}")))?
                .len();
            for p in 0..parts as i32 {
                let at = st
                    .committed
                    .get(&(group.to_owned(), t.clone(), p))
                    .copied()
                    .unwrap_or(0);
                cursors.push((t.clone(), p, at));
            }
        }
        let generation = st.generations.entry(group.to_owned()).or_default();
        *generation += 1;
        Ok(Box::new(MemorySubscription {
            inner: self.inner.clone(),
            group: group.to_owned(),
            generation: *generation,
            cursors,
            next_cursor: 0,
            paused: false,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BusError> {
        let st = self.inner.lock();
        let parts = st
            .topics
            .get(topic)
            .ok_or_else(|| BusError::Config(format!("unknown topic {topic}")))?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(p, l)| (p as i32, l.len() as i64))
            .collect())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct MemorySubscription {
    inner: Arc<Inner>,
    group: String,
    generation: u64,
    /// (topic, partition, next offset to fetch)
    cursors: Vec<(String, i32, i64)>,
    next_cursor: usize,
    /// Between [`Subscription::pause`] and [`Subscription::resume`]: polls
    /// return nothing.
    paused: bool,
}

impl MemorySubscription {
    /// A newer subscription of the group took over (a paused one is told too).
    fn fenced(&self) -> Result<(), BusError> {
        let st = self.inner.lock();
        if st.generations.get(&self.group) != Some(&self.generation) {
            return Err(BusError::NotAssigned(format!("group {} was taken over", self.group)));
        }
        Ok(())
    }

    fn fetch(&mut self, max: usize) -> Result<Vec<Record>, BusError> {
        self.fenced()?;
        let st = self.inner.lock();
        let mut out = Vec::new();
        let n = self.cursors.len();
        // Round-robin over partitions so one busy partition cannot starve the rest.
        for i in 0..n {
            let idx = (self.next_cursor + i) % n;
            let (topic, partition, at) = &mut self.cursors[idx];
            let log = &st.topics[topic.as_str()][*partition as usize];
            let take = (log.len() as i64 - *at).max(0) as usize;
            let take = take.min(max - out.len());
            out.extend_from_slice(&log[*at as usize..*at as usize + take]);
            *at += take as i64;
            if out.len() == max {
                self.next_cursor = (idx + 1) % n;
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        if self.paused {
            self.fenced()?;
            tokio::time::sleep_until(deadline).await;
            return Ok(Vec::new());
        }
        loop {
            let inner = self.inner.clone();
            let notified = inner.appended.notified();
            let got = self.fetch(max.max(1))?;
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    fn commit(&mut self, positions: &[Position]) -> Result<(), BusError> {
        let mut st = self.inner.lock();
        if st.generations.get(&self.group) != Some(&self.generation) {
            return Err(BusError::NotAssigned(format!("group {} was taken over", self.group)));
        }
        for p in positions {
            let slot = st
                .committed
                .entry((self.group.clone(), p.topic.clone(), p.partition))
                .or_insert(0);
            // Positions only move forward, as Kafka's stored offsets do in practice.
            *slot = (*slot).max(p.next_offset);
            let committed = *slot;
            if let Some(log) = st
                .topics
                .get(&p.topic)
                .and_then(|parts| parts.get(p.partition as usize))
            {
                let lag = (log.len() as i64 - committed).max(0);
                opptak_telemetry::metrics().set_consumer_lag(&self.group, &p.topic, p.partition, lag);
            }
        }
        Ok(())
    }

    fn assigned(&self) -> Result<Option<Vec<(String, i32)>>, BusError> {
        Ok(None)
    }

    async fn flush_commits(&mut self) -> Result<(), BusError> {
        Ok(())
    }

    fn pause(&mut self) -> Result<(), BusError> {
        self.paused = true;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), BusError> {
        self.paused = false;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_report_the_consumer_lag() {
        let bus = MemoryBus::new();
        bus.create_topic("lag-test", 1).await.unwrap();
        for i in 0..5u8 {
            bus.publish("lag-test", b"k", &[i]).await.unwrap();
        }
        let mut sub = bus.subscribe("lag-group", &["lag-test".into()]).await.unwrap();
        let got = sub.poll(2, Duration::from_millis(10)).await.unwrap();
        assert!(got.iter().all(|r| r.timestamp_ms.is_some_and(|t| t > 0)));
        sub.commit(&[got[1].next_position()]).unwrap();
        let series = r#"opptak_consumer_lag{group="lag-group",topic="lag-test",partition="0"} "#;
        let text = opptak_telemetry::metrics().render();
        let lag = text.lines().find_map(|l| l.strip_prefix(series));
        assert_eq!(lag, Some("3"), "{text}");
    }
}
