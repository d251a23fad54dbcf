//! The review service's message catalogue: every text a page shows, in
//! Norwegian (bokmål) and English, one constant per message. Pages name a
//! constant (`lang.m(cat::review::APPROVE)`), never a bare string, so the
//! Norwegian page cannot fall back to English text, and a test
//! (`tests/it/web_language.rs`) reads [`all`] to prove that no page in
//! Norwegian shows the English side of any entry.
//!
//! One file per part of the service. Placeholders are `{name}`, filled by
//! [`super::Lang::f`].

/// One message in both languages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub nb: &'static str,
    pub en: &'static str,
}

/// Declares a section's messages and its `ALL` list.
macro_rules! catalogue {
    ($( $(#[$doc:meta])* $name:ident = $nb:literal, $en:literal; )*) => {
        $( $(#[$doc])* pub(crate) const $name: super::Msg = super::Msg { nb: $nb, en: $en }; )*
        /// Every message of this section, by name.
        pub(crate) const ALL: &[(&str, super::Msg)] = &[ $( (stringify!($name), $name) ),* ];
    };
}

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod common;
pub(crate) mod conversations;
pub(crate) mod dashboard;
pub(crate) mod qa;
pub(crate) mod queue;
pub(crate) mod review;
pub(crate) mod search;

/// Every message of the catalogue: `(section, name, message)`.
pub fn all() -> Vec<(&'static str, &'static str, Msg)> {
    let sections: &[(&str, &[(&str, Msg)])] = &[
        ("admin", admin::ALL),
        ("audit", audit::ALL),
        ("common", common::ALL),
        ("conversations", conversations::ALL),
        ("dashboard", dashboard::ALL),
        ("qa", qa::ALL),
        ("queue", queue::ALL),
        ("review", review::ALL),
        ("search", search::ALL),
    ];
    sections
        .iter()
        .flat_map(|(s, list)| list.iter().map(move |(n, m)| (*s, *n, *m)))
        .collect()
}
