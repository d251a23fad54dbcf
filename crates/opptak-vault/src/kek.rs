//! Period KEKs: the key hierarchy that makes a shredding final in every copy.
//!
//! Every data key of a retention class is wrapped under the KEK of its class
//! and the period it was made in (`kek-<class>-<period>`): `audio-24h` and
//! `telephony` per hour, `ki` per day, `archive-5y` and `record-5y` per
//! month. The sweeper's pass ([`maintain`]) creates the KEKs of the coming
//! periods ahead of time, moves the keys that outlive their period's
//! retention (a legal hold: under `kek-hold-<month>`; an extension or a long
//! call: under the current period's KEK) and **destroys** a period's KEK once
//! the period is over and no live data key is wrapped under it. A wrapped key
//! in a database backup, a WAL archive or a replica is then unreadable for
//! good, however old the copy. Bound: `docs/encryption-format.md`.
//!
//! Keys made while their period's KEK did not exist yet (no sweeper had run)
//! are wrapped under the provider's active (root) KEK and moved into their
//! period's KEK by the next pass.

use crate::{key_context, VaultError};
use opptak_crypto::{CryptoError, DataKey, KeyAdmin, KeyProvider, WrappedKey};
use opptak_domain::time::{civil_from_days, days_from_civil};
use opptak_store::meta::{KeyUnder, StoredKey};
use opptak_store::MetadataStore;
use std::collections::{BTreeSet, HashMap};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// How long after its period ends a KEK may be destroyed at the earliest:
/// a key made just before the period ended may still be on its way into
/// the store (a flush retried across a short outage).
pub const GRACE_US: i64 = HOUR_US;

/// The class of the KEKs that keep the keys of held artifacts.
pub const HOLD: &str = "hold";

/// How long a period KEK lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Month,
}

/// The period and the nominal retention of a class's keys: its KEK's keys
/// still live at period end + retention + [`GRACE_US`] are moved on.
/// `None`: the class has no period KEKs (the audit log's signing key).
pub fn class_period(class: &str) -> Option<(Period, i64)> {
    match class {
        "audio-24h" | "telephony" => Some((Period::Hour, DAY_US)),
        "ki" => Some((Period::Day, 30 * DAY_US)),
        // Five calendar years, leap days included.
        "archive-5y" | "record-5y" => Some((Period::Month, 1_827 * DAY_US)),
        HOLD => Some((Period::Month, 0)),
        _ => None,
    }
}

/// The classes whose keys are wrapped under period KEKs.
pub const PERIOD_CLASSES: [&str; 5] = ["audio-24h", "telephony", "ki", "archive-5y", "record-5y"];

/// A period KEK's id taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodKek {
    pub class: String,
    pub start_us: i64,
    pub end_us: i64,
}

impl PeriodKek {
    /// From its period's end, the time after which keys still under it are
    /// moved on and it is destroyed.
    pub fn due_us(&self) -> i64 {
        let retention = class_period(&self.class).map(|(_, r)| r).unwrap_or(0);
        self.end_us + retention + GRACE_US
    }
}

fn period_bounds(period: Period, at_us: i64) -> (i64, i64, String) {
    let day = at_us.div_euclid(DAY_US);
    let (y, m, d) = civil_from_days(day);
    match period {
        Period::Hour => {
            let start = at_us.div_euclid(HOUR_US) * HOUR_US;
            let h = (start - day * DAY_US) / HOUR_US;
            (start, start + HOUR_US, format!("{y:04}{m:02}{d:02}{h:02}"))
        }
        Period::Day => (day * DAY_US, (day + 1) * DAY_US, format!("{y:04}{m:02}{d:02}")),
        Period::Month => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                days_from_civil(y, m, 1) * DAY_US,
                days_from_civil(ny, nm, 1) * DAY_US,
                format!("{y:04}{m:02}"),
            )
        }
    }
}

/// The KEK that keys of `class` made at `at_us` are wrapped under.
pub fn period_kek_id(class: &str, at_us: i64) -> Option<String> {
    let (period, _) = class_period(class)?;
    Some(format!("kek-{class}-{}", period_bounds(period, at_us).2))
}

/// Takes a period KEK's id apart; `None` for any other KEK (a root KEK).
pub fn parse_period_kek(id: &str) -> Option<PeriodKek> {
    let (class, stamp) = id.strip_prefix("kek-")?.rsplit_once('-')?;
    let (period, _) = class_period(class)?;
    let digits = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<u32>().ok();
    let want = match period {
        Period::Hour => 10,
        Period::Day => 8,
        Period::Month => 6,
    };
    if stamp.len() != want || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m) = (digits(0..4)? as i64, digits(4..6)?);
    let d = if want >= 8 { digits(6..8)? } else { 1 };
    let h = if want == 10 { digits(8..10)? } else { 0 };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    let at = days_from_civil(y, m, d) * DAY_US + h as i64 * HOUR_US;
    let (start_us, end_us, again) = period_bounds(period, at);
    // 31 February and the like do not name a period.
    (again == stamp).then(|| PeriodKek {
        class: class.to_owned(),
        start_us,
        end_us,
    })
}

/// Wraps `key` of `class` under the KEK of the period `at_us` falls in, or
/// under the provider's active KEK when that period KEK does not exist (yet).
pub fn wrap_for_period<K: KeyProvider + ?Sized>(
    keys: &K,
    key: &DataKey,
    class: &str,
    context: &[u8],
    at_us: i64,
) -> Result<WrappedKey, CryptoError> {
    if let Some(id) = period_kek_id(class, at_us) {
        if let Some(w) = keys.wrap_under(&id, key, context)? {
            return Ok(w);
        }
    }
    keys.wrap(key, context)
}

/// What one pass of [`maintain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KekReport {
    /// Period KEKs created ahead of their period.
    pub created: Vec<String>,
    /// Data keys moved to another KEK (out of a root KEK, out of a due
    /// period KEK, into or out of a hold KEK).
    pub moved: u64,
    /// KEKs destroyed: everything they wrapped had expired.
    pub destroyed: Vec<String>,
}

/// The sweeper's pass over the key hierarchy at `now_us`: creates the period
/// KEKs from now to `now_us + lookahead_us`, moves keys that must move, and
/// destroys the period KEKs that are over and wrap no live key. Idempotent;
/// safe to interrupt (every move is one guarded update).
pub async fn maintain(
    meta: &dyn MetadataStore,
    admin: &dyn KeyAdmin,
    now_us: i64,
    lookahead_us: i64,
) -> Result<KekReport, VaultError> {
    let mut pass = Pass {
        admin,
        now_us,
        existing: admin
            .list_keks()
            .map_err(VaultError::Key)?
            .into_iter()
            .map(|k| k.id)
            .collect(),
        report: KekReport::default(),
    };
    let end = now_us + lookahead_us.max(0);
    for class in PERIOD_CLASSES {
        let mut t = now_us;
        while t < end + HOUR_US {
            if let Some(id) = period_kek_id(class, t.min(end)) {
                pass.ensure(&id)?;
            }
            t += HOUR_US;
        }
    }

    let held: BTreeSet<String> = meta
        .holds(None, true)
        .await?
        .into_iter()
        .map(|h| h.call_id.to_string())
        .collect();
    let keks: BTreeSet<String> = meta.key_counts().await?.into_iter().map(|(kek, _, _)| kek).collect();
    for kek in keks {
        let plan = parse_period_kek(&kek);
        let under_hold = plan.as_ref().is_some_and(|p| p.class == HOLD);
        if plan.as_ref().is_some_and(|p| !under_hold && p.due_us() > now_us) {
            continue; // a period KEK still within its keys' retention
        }
        // Keys under a root KEK or a due period KEK all move; keys under a
        // hold KEK move once their hold is released. One batch at a time
        // until a batch moves nothing.
        loop {
            let batch = meta.keys_under(&kek, 500).await?;
            let mut moved = Vec::new();
            for k in &batch {
                let is_held = held.contains(&k.owner);
                let target = match &plan {
                    None => pass.home_of(k)?,
                    Some(_) if under_hold && is_held => continue,
                    Some(_) if is_held => {
                        let id = period_kek_id(HOLD, now_us).unwrap_or_default();
                        pass.ensure(&id)?;
                        id
                    }
                    Some(_) => pass.current(&k.key.class)?,
                };
                if target != kek {
                    moved.push(rewrapped(admin, k, &target)?);
                }
            }
            if moved.is_empty() {
                break;
            }
            pass.report.moved += meta.rewrap(&moved).await?;
        }
    }

    let live: HashMap<String, u64> = meta
        .key_counts()
        .await?
        .into_iter()
        .fold(HashMap::new(), |mut m, (kek, _, n)| {
            *m.entry(kek).or_default() += n;
            m
        });
    for k in admin.list_keks().map_err(VaultError::Key)? {
        let Some(p) = parse_period_kek(&k.id) else { continue };
        if k.active || p.end_us + GRACE_US > now_us || live.get(&k.id).copied().unwrap_or(0) > 0 {
            continue;
        }
        admin.destroy_kek(&k.id).map_err(VaultError::Key)?;
        tracing::info!(kek_id = %k.id, "period kek destroyed: every data key it wrapped has expired");
        pass.report.destroyed.push(k.id);
    }
    Ok(pass.report)
}

struct Pass<'a> {
    admin: &'a dyn KeyAdmin,
    now_us: i64,
    existing: BTreeSet<String>,
    report: KekReport,
}

impl Pass<'_> {
    fn ensure(&mut self, id: &str) -> Result<(), VaultError> {
        if self.existing.contains(id) {
            return Ok(());
        }
        if self.admin.create_kek(id).map_err(VaultError::Key)? {
            tracing::info!(kek_id = %id, "period kek created");
            self.report.created.push(id.to_owned());
        }
        self.existing.insert(id.to_owned());
        Ok(())
    }

    /// The current period's KEK of `class`, created if missing.
    fn current(&mut self, class: &str) -> Result<String, VaultError> {
        let Some(id) = period_kek_id(class, self.now_us) else {
            return Ok(self.admin.active_kek_id());
        };
        self.ensure(&id)?;
        Ok(id)
    }

    /// Where a key under a root KEK belongs: its own period's KEK while that
    /// still takes keys (exists and is not due), else the current period's;
    /// a class without period KEKs stays where it is.
    fn home_of(&mut self, k: &KeyUnder) -> Result<String, VaultError> {
        let Some(own) = period_kek_id(&k.key.class, k.created_at_us) else {
            return Ok(k.key.kek_id.clone());
        };
        let open = parse_period_kek(&own).is_some_and(|p| p.due_us() > self.now_us) && self.existing.contains(&own);
        if open {
            Ok(own)
        } else {
            self.current(&k.key.class)
        }
    }
}

/// `k` unwrapped and wrapped again under `target`, for a guarded rewrap.
fn rewrapped(admin: &dyn KeyAdmin, k: &KeyUnder, target: &str) -> Result<(String, StoredKey), VaultError> {
    let ctx = key_context(&k.owner, &k.key.class);
    let old = WrappedKey {
        key_id: k.key.key_id.clone(),
        kek_id: k.key.kek_id.clone(),
        sealed: k.key.sealed.clone(),
    };
    let dk = admin.unwrap(&old, &ctx).map_err(VaultError::Key)?;
    let w = admin
        .wrap_under(target, &dk, &ctx)
        .map_err(VaultError::Key)?
        .ok_or_else(|| VaultError::Key(CryptoError::KeyUnavailable(format!("kek {target} vanished"))))?;
    Ok((
        k.key.kek_id.clone(),
        StoredKey {
            key_id: w.key_id,
            class: k.key.class.clone(),
            kek_id: w.kek_id,
            sealed: w.sealed,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn period_ids_round_trip_and_nothing_else_parses() {
        let t = 1_796_601_600_000_000 + 13 * HOUR_US + 5; // 2026-12-07 13:00:00
        assert_eq!(period_kek_id("audio-24h", t).unwrap(), "kek-audio-24h-2026120713");
        assert_eq!(period_kek_id("ki", t).unwrap(), "kek-ki-20261207");
        assert_eq!(period_kek_id("archive-5y", t).unwrap(), "kek-archive-5y-202612");
        assert_eq!(period_kek_id(HOLD, t).unwrap(), "kek-hold-202612");
        assert_eq!(period_kek_id("audit-signing", t), None);
        for class in PERIOD_CLASSES {
            let id = period_kek_id(class, t).unwrap();
            let p = parse_period_kek(&id).unwrap();
            assert_eq!(p.class, class);
            assert!(p.start_us <= t && t < p.end_us, "{id}");
        }
        let dec = parse_period_kek("kek-record-5y-202612").unwrap();
        assert_eq!(dec.end_us - dec.start_us, 31 * DAY_US);
        for bad in [
            "kek-0123456789abcdef",
            "kek-ki-2026120",
            "kek-ki-20260231",
            "kek-ki-2026120x",
            "kek-nope-20261207",
            "kek-audio-24h-2026120724",
            "kek-ki-20261207-",
        ] {
            assert_eq!(parse_period_kek(bad), None, "{bad}");
        }
        let ki = parse_period_kek("kek-ki-20261207").unwrap();
        assert_eq!(ki.due_us(), ki.end_us + 30 * DAY_US + GRACE_US);
    }
}
