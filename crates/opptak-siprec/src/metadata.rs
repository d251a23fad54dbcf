//! Recording metadata (RFC 7865, `application/rs-metadata+xml`).
//!
//! Read: the recording session's id, each participant's AOR (names are
//! personal data and not kept), each stream's SDP label, which participant
//! sends which stream (`participantstreamassoc`), and the leaf elements of
//! `extensiondata` (UCID and vendor fields) as name/value pairs. Both the
//! RFC 7865 form (`participant_id` attributes, `nameID aor=`) and the older
//! draft form (`id` attributes, `<aor>` elements) are accepted.
//!
//! Which participant is the agent: the metadata cannot say. The first whose
//! AOR matches the configured agent pattern; with none configured or none
//! matching, the second participant (the called party: an SBC lists the
//! caller first, and a customer calls the bank).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The largest metadata document read.
pub const MAX_METADATA: usize = 32 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("malformed metadata XML: {0}")]
    Xml(String),
    #[error("metadata: {0}")]
    Invalid(&'static str),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Participant {
    pub id: String,
    pub aor: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub session_id: Option<String>,
    pub participants: Vec<Participant>,
    /// (stream id, SDP label)
    pub streams: Vec<(String, String)>,
    /// (participant id, stream id) it sends.
    pub sends: Vec<(String, String)>,
    /// Leaf elements under `extensiondata`: (local name lowercased, text).
    pub extensions: Vec<(String, String)>,
}

/// The two recorded sides, resolved to SDP labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sides {
    pub agent_label: String,
    pub customer_label: String,
    pub agent_aor: String,
    pub customer_aor: String,
    /// The agent was the called party (an inbound call).
    pub agent_called: bool,
}

fn attr(e: &BytesStart<'_>, names: &[&str]) -> Result<Option<String>, MetadataError> {
    for a in e.attributes() {
        let a = a.map_err(|e| MetadataError::Xml(e.to_string()))?;
        let key = a.key.local_name();
        let key = std::str::from_utf8(key.as_ref()).unwrap_or("");
        if names.contains(&key) {
            let v = a.unescape_value().map_err(|e| MetadataError::Xml(e.to_string()))?;
            return Ok(Some(v.trim().to_owned()));
        }
    }
    Ok(None)
}

pub fn parse(xml: &[u8]) -> Result<Metadata, MetadataError> {
    if xml.len() > MAX_METADATA {
        return Err(MetadataError::Invalid("document too large"));
    }
    let text = std::str::from_utf8(xml).map_err(|_| MetadataError::Xml("not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut md = Metadata::default();
    // Element stack of local names, and the context ids they opened.
    let mut stack: Vec<String> = Vec::new();
    let mut participant: Option<usize> = None;
    let mut stream: Option<usize> = None;
    let mut assoc: Option<String> = None;
    let mut root_seen = false;
    let mut text = String::new();
    loop {
        let ev = reader.read_event().map_err(|e| MetadataError::Xml(e.to_string()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).to_ascii_lowercase();
                if stack.is_empty() {
                    if root_seen || name != "recording" {
                        return Err(MetadataError::Invalid("root element is not <recording>"));
                    }
                    root_seen = true;
                }
                if stack.len() > 16 {
                    return Err(MetadataError::Invalid("nested too deep"));
                }
                let parent = stack.last().map(String::as_str);
                match (parent, name.as_str()) {
                    (Some("recording"), "session") if md.session_id.is_none() => {
                        md.session_id = attr(e, &["session_id", "id"])?;
                    }
                    (Some("recording"), "participant") => {
                        let id = attr(e, &["participant_id", "id"])?
                            .ok_or(MetadataError::Invalid("participant without id"))?;
                        md.participants.push(Participant { id, aor: String::new() });
                        participant = Some(md.participants.len() - 1);
                    }
                    (Some("participant"), "nameid") => {
                        if let (Some(i), Some(aor)) = (participant, attr(e, &["aor"])?) {
                            md.participants[i].aor = aor;
                        }
                    }
                    (Some("recording"), "stream") => {
                        let id = attr(e, &["stream_id", "id"])?.ok_or(MetadataError::Invalid("stream without id"))?;
                        md.streams.push((id, String::new()));
                        stream = Some(md.streams.len() - 1);
                    }
                    (Some("recording"), "participantstreamassoc") => {
                        assoc = Some(
                            attr(e, &["participant_id", "id"])?
                                .ok_or(MetadataError::Invalid("participantstreamassoc without participant_id"))?,
                        );
                    }
                    _ => {}
                }
                text.clear();
                if matches!(ev, Event::Start(_)) {
                    stack.push(name);
                }
            }
            Event::Text(t) => {
                let v = t.decode().map_err(|e| MetadataError::Xml(e.to_string()))?;
                text.push_str(&v);
            }
            Event::GeneralRef(r) => {
                // Predefined entities and character references only.
                let name = r.decode().map_err(|e| MetadataError::Xml(e.to_string()))?;
                let c = match r.resolve_char_ref().map_err(|e| MetadataError::Xml(e.to_string()))? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or(MetadataError::Invalid("unknown entity"))?
                        .to_owned(),
                };
                text.push_str(&c);
            }
            Event::End(_) => {
                let v = std::mem::take(&mut text).trim().to_owned();
                let here = stack.last().map(String::as_str);
                let parent = stack.len().checked_sub(2).map(|i| stack[i].as_str());
                match (parent, here) {
                    (Some("participant"), Some("aor")) | (Some("nameid"), Some("aor")) => {
                        if let Some(i) = participant {
                            md.participants[i].aor = v;
                        }
                    }
                    (Some("stream"), Some("label")) => {
                        if let Some(i) = stream {
                            md.streams[i].1 = v;
                        }
                    }
                    (Some("participantstreamassoc"), Some("send")) => {
                        if let Some(p) = &assoc {
                            md.sends.push((p.clone(), v));
                        }
                    }
                    (_, Some(leaf))
                        if !v.is_empty()
                            && v.len() <= 256
                            && md.extensions.len() < 64
                            && stack.iter().any(|s| s == "extensiondata")
                            && leaf != "extensiondata" =>
                    {
                        md.extensions.push((leaf.to_owned(), v));
                    }
                    _ => {}
                }
                match stack.pop().as_deref() {
                    Some("participant") => participant = None,
                    Some("stream") => stream = None,
                    Some("participantstreamassoc") => assoc = None,
                    _ => {}
                }
            }
            Event::DocType(_) => return Err(MetadataError::Invalid("DOCTYPE not allowed")),
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err(MetadataError::Invalid("no <recording> element"));
    }
    if !stack.is_empty() {
        return Err(MetadataError::Xml("unclosed element".into()));
    }
    Ok(md)
}

impl Metadata {
    /// The stream label a participant sends.
    fn label_sent_by(&self, participant: &str) -> Option<&str> {
        self.sends
            .iter()
            .filter(|(p, _)| p == participant)
            .find_map(|(_, s)| self.streams.iter().find(|(id, _)| id == s))
            .map(|(_, label)| label.as_str())
            .filter(|l| !l.is_empty())
    }

    /// Agent and customer, by [the rule above](self); `is_agent` matches an AOR.
    pub fn sides(&self, is_agent: impl Fn(&str) -> bool) -> Result<Sides, MetadataError> {
        let senders: Vec<(usize, &Participant, &str)> = self
            .participants
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.label_sent_by(&p.id).map(|l| (i, p, l)))
            .collect();
        if senders.len() < 2 {
            return Err(MetadataError::Invalid(
                "fewer than two participants send a labelled stream",
            ));
        }
        let agent = senders.iter().position(|(_, p, _)| is_agent(&p.aor)).unwrap_or(1);
        let customer = if agent == 0 { 1 } else { 0 };
        let (ai, a, al) = senders[agent];
        let (ci, c, cl) = senders[customer];
        if al == cl {
            return Err(MetadataError::Invalid("agent and customer send the same stream"));
        }
        Ok(Sides {
            agent_label: al.to_owned(),
            customer_label: cl.to_owned(),
            agent_aor: a.aor.clone(),
            customer_aor: c.aor.clone(),
            agent_called: ai > ci,
        })
    }

    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// RFC 7865 section 9.1 style, with a Cisco-style UCID extension.
    pub(crate) const RFC7865: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
    <extensiondata xmlns:x="urn:x-vendor"><x:ucid>00001234561700000001</x:ucid><x:skill>invest</x:skill></extensiondata>
  </session>
  <participant participant_id="p1">
    <nameID aor="sip:+4791234567@carrier.example"><name xml:lang="no">Kari Nordmann</name></nameID>
  </participant>
  <participant participant_id="p2">
    <nameID aor="sip:4001@bank.example"><name>Agent</name></nameID>
  </participant>
  <stream stream_id="s1" session_id="hVpd7YQgRW2nD22h7q60JQ=="><label>1</label></stream>
  <stream stream_id="s2" session_id="hVpd7YQgRW2nD22h7q60JQ=="><label>2</label></stream>
  <participantstreamassoc participant_id="p1"><send>s1</send><recv>s2</recv></participantstreamassoc>
  <participantstreamassoc participant_id="p2"><send>s2</send><recv>s1</recv></participantstreamassoc>
</recording>"#;

    #[test]
    fn reads_rfc7865_metadata() {
        let md = parse(RFC7865.as_bytes()).unwrap();
        assert_eq!(md.session_id.as_deref(), Some("hVpd7YQgRW2nD22h7q60JQ=="));
        assert_eq!(md.participants[0].aor, "sip:+4791234567@carrier.example");
        assert_eq!(md.extension("UCID"), Some("00001234561700000001"));
        assert_eq!(md.extension("skill"), Some("invest"));
        assert!(!format!("{md:?}").contains("Kari"), "names are not kept");
        let s = md.sides(|_| false).unwrap();
        assert_eq!(
            (s.agent_label.as_str(), s.customer_label.as_str(), s.agent_called),
            ("2", "1", true)
        );
        // A pattern naming the first participant makes it the agent (outbound call).
        let s = md.sides(|aor| aor.contains("+4791234567")).unwrap();
        assert_eq!(
            (s.agent_label.as_str(), s.customer_label.as_str(), s.agent_called),
            ("1", "2", false)
        );
    }

    #[test]
    fn reads_the_draft_form() {
        let xml = r#"<recording xmlns="urn:ietf:params:xml:ns:recording"><session id="S"/>
<participant id="a"><aor>sip:alice@x</aor></participant><participant id="b"><aor>sip:bob@y</aor></participant>
<stream id="x1"><label>10</label></stream><stream id="x2"><label>11</label></stream>
<participantstreamassoc id="a"><send>x1</send></participantstreamassoc><participantstreamassoc id="b"><send>x2</send></participantstreamassoc></recording>"#;
        let md = parse(xml.as_bytes()).unwrap();
        let s = md.sides(|_| false).unwrap();
        assert_eq!((s.agent_aor.as_str(), s.customer_label.as_str()), ("sip:bob@y", "10"));
    }

    #[test]
    fn malformed_metadata_is_an_error_with_a_reason() {
        for bad in [
            "<recording><participant participant_id='a'></recording>",
            "<recordin/>",
            "not xml at all <",
            "<!DOCTYPE x [<!ENTITY a 'b'>]><recording/>",
            "<recording><participant/></recording>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let one_sided = RFC7865.replace("<send>s2</send>", "");
        assert_eq!(
            parse(one_sided.as_bytes()).unwrap().sides(|_| false),
            Err(MetadataError::Invalid(
                "fewer than two participants send a labelled stream"
            ))
        );
    }
}
