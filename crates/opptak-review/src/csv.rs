//! The one CSV writer of the service's downloads (the QA report, the topic
//! dashboard): RFC 4180 quoting, and CSV-injection defusing — a leading `'`
//! on anything a spreadsheet would run as a formula (`= + - @`, and tab or
//! carriage return, which some strip before looking).

/// One CSV field.
pub fn field(s: &str) -> String {
    let defused = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if defused.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}
