//! Documentation that copies the contract must not drift from it.

fn blocks(proto: &str) -> Vec<String> {
    // Top-level `message`/`enum` blocks of a .proto file.
    let mut out = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    for line in proto.lines() {
        if line.starts_with("message ") || line.starts_with("enum ") {
            cur = Some(vec![line]);
        } else if let Some(c) = cur.as_mut() {
            c.push(line);
            if line == "}" {
                out.push(cur.take().unwrap_or_default().join("\n"));
            }
        }
    }
    out
}

#[test]
fn asyncapi_inlines_the_current_proto_definitions() {
    let root = env!("CARGO_MANIFEST_DIR");
    let yaml = std::fs::read_to_string(format!("{root}/docs/asyncapi.yaml")).unwrap();
    // Compare with the YAML block indentation removed.
    let flat: String = yaml.lines().map(|l| l.trim_start()).collect::<Vec<_>>().join("\n");
    for file in ["telephony.proto", "messages.proto", "events.proto"] {
        let proto = std::fs::read_to_string(format!("{root}/proto/opptak/v1/{file}")).unwrap();
        for b in blocks(&proto) {
            let b: String = b.lines().map(|l| l.trim_start()).collect::<Vec<_>>().join("\n");
            if file == "events.proto" && !flat.contains(b.lines().next().unwrap_or_default()) {
                continue; // only the messages the AsyncAPI file names
            }
            assert!(flat.contains(&b), "docs/asyncapi.yaml is out of date with {file}:\n{b}");
        }
    }
}

#[test]
fn contract_guide_names_every_dead_letter_reason() {
    let root = env!("CARGO_MANIFEST_DIR");
    let guide = std::fs::read_to_string(format!("{root}/docs/telephony-contract.md")).unwrap();
    for i in (1..=13).chain([15, 16]) {
        let r = opptak_proto::v1::DeadLetterReason::try_from(i).unwrap();
        let name = r.as_str_name().trim_start_matches("DEAD_LETTER_REASON_");
        assert!(
            guide.contains(name),
            "docs/telephony-contract.md does not explain {name}"
        );
    }
}

/// The names a `.proto` file defines: its messages and enums, their fields
/// and their values.
fn proto_names(proto: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks(proto) {
        for line in b.lines().map(str::trim) {
            if line.starts_with("//") || line.starts_with("oneof ") || line == "}" {
                continue;
            }
            if let Some(head) = line.strip_prefix("message ").or_else(|| line.strip_prefix("enum ")) {
                out.push(head.trim_end_matches(" {").to_owned());
            } else if let Some((lhs, _)) = line.split_once(" = ") {
                // `Type name = N;`, `repeated Type name = N;` or `VALUE = N;`
                out.push(lhs.rsplit(' ').next().unwrap_or_default().to_owned());
            }
        }
    }
    out
}

/// The chat systems' guide names every message, field and enum value of
/// messages.proto, and explains every dead-letter reason the messages role
/// uses.
#[test]
fn messages_guide_names_every_field_and_reason() {
    let root = env!("CARGO_MANIFEST_DIR");
    let guide = std::fs::read_to_string(format!("{root}/docs/messages-contract.md")).unwrap();
    let proto = std::fs::read_to_string(format!("{root}/proto/opptak/v1/messages.proto")).unwrap();
    let names = proto_names(&proto);
    for want in [
        "ConversationEvent",
        "conversation_id",
        "sealed_text",
        "SENDER_BOT",
        "last_sequence",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not parsed from messages.proto: {names:?}"
        );
    }
    for name in &names {
        assert!(
            guide.contains(&format!("`{name}`")) || guide.contains(&format!("`{name} ")),
            "docs/messages-contract.md does not name {name}"
        );
    }
    use opptak_proto::v1::DeadLetterReason as R;
    for r in [
        R::Malformed,
        R::InvalidFormat,
        R::KeyMismatch,
        R::UnknownCall,
        R::DuplicateStart,
        R::ConflictingChunk,
        R::OversizedChunk,
        R::AfterEnd,
        R::Undecryptable,
    ] {
        let name = r.as_str_name().trim_start_matches("DEAD_LETTER_REASON_");
        assert!(
            guide.contains(&format!("| `{name}` ({})", r as i32)),
            "docs/messages-contract.md does not explain {name}"
        );
    }
    // The exact associated data of sealed texts and the IP address.
    for ad in [
        "\"opptak-message-v1\\0\"",
        "\"<conversation id>/messages\"",
        "sequence 0",
    ] {
        assert!(guide.contains(ad), "docs/messages-contract.md does not give {ad}");
    }
}

/// `docs/openapi.json` is the document the service serves, generated from
/// the handlers; `OPPTAK_UPDATE_DOCS=1 cargo test --test it docs::` rewrites it.
#[test]
fn openapi_document_is_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/docs/openapi.json");
    let want = serde_json::to_string_pretty(&opptak_review::web::openapi()).unwrap() + "\n";
    if std::env::var("OPPTAK_UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/openapi.json is out of date: run OPPTAK_UPDATE_DOCS=1 cargo test --test it docs::"
    );
    // Every documented path is served under /api/v1 and says who may call it.
    let doc: serde_json::Value = serde_json::from_str(&want).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 3, "{paths:?}");
    for (p, ops) in paths {
        assert!(p.starts_with("/api/v1/"), "{p}");
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {p} has no security"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {p} does not document 401");
        }
    }
}

/// Every key of `src/default.toml` is in README.md's configuration table
/// (in full, or by its last part in a row that groups keys), and every
/// transport-security key in docs/security.md too.
#[test]
fn every_configuration_key_is_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let security = std::fs::read_to_string(format!("{root}/docs/security.md")).unwrap();
    let defaults: toml::Table = std::fs::read_to_string(format!("{root}/src/default.toml"))
        .unwrap()
        .parse()
        .unwrap();
    fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => keys(&path, sub, out),
                _ => out.push(path),
            }
        }
    }
    let mut all = Vec::new();
    keys("", &defaults, &mut all);
    assert!(all.len() > 60, "{all:?}");
    for key in &all {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            readme.contains(&format!("`{key}`")) || readme.contains(&format!("`{leaf}`")),
            "README.md's configuration table does not name {key}"
        );
    }
    for key in all
        .iter()
        .filter(|k| k.starts_with("bus.tls.") || k.starts_with("bus.sasl.") || *k == "storage.metadata_password_file")
    {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not name {key} in full"
        );
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            security.contains(key.as_str()) || security.lines().any(|l| l.starts_with(&format!("{leaf} = "))),
            "docs/security.md does not explain {key}"
        );
    }
}

/// docs/security.md's tables are `opptak::topics`: each topic's writers and
/// readers have exactly its ACLs, and its retention is the policy's.
#[test]
fn the_security_guide_matches_the_topics_and_their_retention() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/security.md")).unwrap();
    let cells = |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_owned()).collect() };
    let first_code = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_owned();
    // | principal | writes | reads | consumer groups |
    let acl_rows: Vec<Vec<String>> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| principal | writes | reads |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    assert!(acl_rows.len() >= 7, "{acl_rows:?}");
    let config = opptak::config::Config::load_from(None, &[]).unwrap();
    for t in &opptak::topics::TOPICS {
        for row in &acl_rows {
            let principal = first_code(&row[1]);
            let (writes, reads) = (row[2].contains(t.base), row[3].contains(t.base));
            assert_eq!(
                writes,
                t.writers.contains(&principal.as_str()),
                "docs/security.md: {principal} writing {}",
                t.base
            );
            assert_eq!(
                reads,
                t.readers.contains(&principal.as_str()),
                "docs/security.md: {principal} reading {}",
                t.base
            );
            for group in opptak::topics::groups(&config, &principal) {
                let prefix = first_code(&row[4]);
                assert!(
                    !prefix.is_empty() && group.starts_with(&prefix),
                    "{principal}: group {group} outside {:?}",
                    row[4]
                );
            }
        }
        // Retention and segments: docs/topics.md (the_topic_table_is_the_code).
    }
}

/// `(method, path)` of every route the review service registers
/// (`.route("/path", get(..).post(..))` in `crates/opptak-review/src/web/`),
/// with `{placeholders}` kept.
fn review_routes() -> std::collections::BTreeSet<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(format!("{root}/crates/opptak-review/src/web")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for part in text.split(".route(\"").skip(1) {
            let Some((route, rest)) = part.split_once('"') else {
                continue;
            };
            // The handlers up to the route's closing parenthesis.
            let handlers = rest.split(")\n").next().unwrap_or(rest);
            for method in ["get", "post"] {
                if handlers.contains(&format!("{method}(")) {
                    out.insert((method.to_uppercase(), route.to_owned()));
                }
            }
        }
    }
    out
}

/// The same pairs as `docs/review-service.md`'s route table names them:
/// every `` `GET /a`, `POST /b` `` of its first column, optional parts
/// (`[?reason=]`, `[.csv]`, `[/{id}]`) spelled out both ways, queries dropped.
fn documented_review_routes() -> std::collections::BTreeSet<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/review-service.md")).unwrap();
    let table = doc
        .split("## Routes")
        .nth(1)
        .expect("a Routes section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut out = std::collections::BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap_or(line);
        let mut method = String::new();
        for item in first.split('`').skip(1).step_by(2) {
            let (m, path) = match item.split_once(' ') {
                Some((m, p)) if m.chars().all(|c| c.is_ascii_uppercase()) => (m.to_owned(), p),
                _ => (method.clone(), item), // `GET /a`, `/b`: the method goes on
            };
            method = m.clone();
            let path = path.split('?').next().unwrap_or(path);
            let mut variants = vec![String::new()];
            let mut rest = path;
            while let Some(open) = rest.find('[') {
                let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
                let (before, optional) = (&rest[..open], &rest[open + 1..close]);
                let optional = optional.split('?').next().unwrap_or("");
                variants = variants
                    .into_iter()
                    .flat_map(|v| [format!("{v}{before}"), format!("{v}{before}{optional}")])
                    .collect();
                rest = &rest[(close + 1).min(rest.len())..];
            }
            for v in variants {
                out.insert((m.clone(), format!("{v}{rest}").trim_end_matches(',').to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_review_service_guide_lists_exactly_its_routes() {
    let routes = review_routes();
    assert!(routes.len() >= 25, "{routes:?}");
    let documented = documented_review_routes();
    let missing: Vec<_> = routes
        .iter()
        .filter(|r| !documented.contains(*r) && !r.1.starts_with("/api/") && r.1 != "/static/{name}")
        .collect();
    assert!(
        missing.is_empty(),
        "docs/review-service.md's route table lacks {missing:?}"
    );
    let gone: Vec<_> = documented
        .iter()
        .filter(|(m, p)| {
            (m == "GET" || m == "POST") && !p.starts_with("/api/") && !routes.contains(&(m.clone(), p.clone()))
        })
        .collect();
    assert!(
        gone.is_empty(),
        "docs/review-service.md names routes the service does not have: {gone:?}"
    );
}

/// A Markdown table cell without its parenthesized asides (which may name
/// fields or settings in backticks): what is left names roles and groups.
fn without_asides(cell: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in cell.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

/// The backticked words of `text`, in order.
fn code_words(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// docs/topics.md's table is `opptak::topics` with the default config and
/// policy: exactly the code's topics, each with exactly its writers, its
/// readers each with the consumer group it reads in, and the partitions,
/// `retention.ms` and `segment.ms` opptak creates it with. The guides that
/// describe topics point to it.
#[test]
fn the_topic_table_is_the_code() {
    use std::collections::BTreeSet;
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/topics.md")).unwrap();
    let rows: Vec<Vec<String>> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| topic | carries | written by | read by"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.split(" | ")
                .map(|c| c.trim_matches(|c| c == '|' || c == ' ').to_owned())
                .collect()
        })
        .collect();
    let config = opptak::config::Config::load_from(None, &[]).unwrap();
    let policy = opptak_domain::retention::Policy::default_policy();
    let documented: BTreeSet<String> = rows.iter().map(|r| code_words(&r[0]).concat()).collect();
    let code: BTreeSet<String> = opptak::topics::TOPICS.iter().map(|t| t.base.to_owned()).collect();
    assert_eq!(documented, code, "docs/topics.md: the topics");
    for t in &opptak::topics::TOPICS {
        let row = rows.iter().find(|r| r[0] == format!("`{}`", t.base)).unwrap();
        assert_eq!(row.len(), 7, "{row:?}");
        let writers: BTreeSet<String> = code_words(&without_asides(&row[2])).into_iter().collect();
        let want: BTreeSet<String> = t.writers.iter().map(|w| w.to_string()).collect();
        assert_eq!(writers, want, "docs/topics.md: who writes {}", t.base);
        // `role` in `group`, ...
        let readers = without_asides(&row[3]);
        let parts: Vec<&str> = readers.split('`').collect();
        let mut pairs = BTreeSet::new();
        let mut i = 1;
        while i < parts.len() {
            assert!(
                parts.get(i + 1).map(|s| s.trim()) == Some("in") && i + 2 < parts.len(),
                "docs/topics.md, {}: reader `{}` without its consumer group ({readers:?})",
                t.base,
                parts[i]
            );
            pairs.insert((parts[i].to_owned(), parts[i + 2].to_owned()));
            i += 4;
        }
        let want: BTreeSet<(String, String)> = t
            .readers
            .iter()
            .map(|r| {
                let group = opptak::topics::group(&config, r, t.base).unwrap();
                // `opptak deadletters` appends its process id.
                let group = if group == opptak::topics::DEADLETTERS_GROUP {
                    format!("{group}-<pid>")
                } else {
                    group
                };
                (r.to_string(), group)
            })
            .collect();
        assert_eq!(pairs, want, "docs/topics.md: who reads {}, in which group", t.base);
        let spec = t.spec(&config, &policy);
        assert!(
            row[4].contains("`bus.partitions`") && row[4].contains(&format!("({})", spec.partitions)),
            "docs/topics.md, {}: partitions {row:?}",
            t.base
        );
        let human = |ms: Option<i64>| opptak::topics::human(ms.unwrap());
        assert!(
            row[5].replace(' ', "").contains(&human(spec.retention_ms)),
            "docs/topics.md, {}: retention.ms {} expected, {row:?}",
            t.base,
            human(spec.retention_ms)
        );
        assert!(
            row[6].replace(' ', "") == human(spec.segment_ms),
            "docs/topics.md, {}: segment.ms {} expected, {row:?}",
            t.base,
            human(spec.segment_ms)
        );
    }
    // The groups the table names are the configuration's keys' defaults.
    for key in [
        "recorder.group",
        "ki.live_group",
        "ki.transcriber_group",
        "ki.summarizer_group",
        "messages.group",
    ] {
        assert!(doc.contains(&format!("`{key}`")), "docs/topics.md does not name {key}");
    }
    for guide in [
        "docs/telephony-contract.md",
        "docs/security.md",
        "docs/messages-contract.md",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{guide}")).unwrap();
        assert!(text.contains("topics.md)"), "{guide} does not link docs/topics.md");
    }
}

/// One `acl …` line of a Markdown shell block (the `kafka-acls.sh` wrapper
/// the guides define): its principals, operations, topics and group prefixes.
#[derive(Debug, Default)]
struct AclLine {
    principals: Vec<String>,
    operations: Vec<String>,
    topics: Vec<String>,
    groups: Vec<String>,
}

fn acl_lines(text: &str) -> Vec<AclLine> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("acl --")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut acl = AclLine::default();
        for pair in words.windows(2) {
            let value = pair[1].to_owned();
            match pair[0] {
                "--allow-principal" => acl.principals.push(value.trim_start_matches("User:").to_owned()),
                "--operation" => acl.operations.push(value),
                "--topic" => acl.topics.push(value),
                "--group" => acl.groups.push(value),
                _ => {}
            }
        }
        out.push(acl);
    }
    out
}

/// Every `kafka-acls.sh` line in README.md, deploy/README.md and docs/ grants
/// a role of `opptak::topics` (or `opptak`, one principal for all the
/// roles) exactly what the code says it does: Write on each topic it
/// writes, Read on each it reads and on the prefix of each consumer group it
/// reads in, and nothing else. A principal a guide names gets all of it in
/// that guide; docs/security.md names every role.
#[test]
fn acl_commands_in_the_guides_are_the_topics_roles() {
    use std::collections::BTreeSet;
    let root = env!("CARGO_MANIFEST_DIR");
    let config = opptak::config::Config::load_from(None, &[]).unwrap();
    let topics = &opptak::topics::TOPICS;
    let roles: BTreeSet<&str> = topics
        .iter()
        .flat_map(|t| t.writers.iter().chain(t.readers))
        .copied()
        .collect();
    // What a principal needs: (operation, resource) pairs.
    let needs = |principal: &str| -> BTreeSet<(String, String)> {
        // `opptak`: every role of `opptak run` (not the bank's producers,
        // not an operator).
        let mine =
            |r: &str| r == principal || (principal == "opptak" && !["telephony", "chat", "operator"].contains(&r));
        let mut out = BTreeSet::new();
        for t in topics {
            if t.writers.iter().any(|w| mine(w)) {
                out.insert(("Write".to_owned(), t.base.to_owned()));
            }
            for r in t.readers.iter().filter(|r| mine(r)) {
                out.insert(("Read".to_owned(), t.base.to_owned()));
                out.insert((
                    "Read".to_owned(),
                    format!("group {}", opptak::topics::group(&config, r, t.base).unwrap()),
                ));
            }
        }
        out
    };
    let mut files = vec![format!("{root}/README.md"), format!("{root}/deploy/README.md")];
    for e in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "md") {
            files.push(path.display().to_string());
        }
    }
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut granted: std::collections::BTreeMap<String, BTreeSet<(String, String)>> = Default::default();
        for acl in acl_lines(&text) {
            for p in acl
                .principals
                .iter()
                .filter(|p| roles.contains(p.as_str()) || *p == "opptak")
            {
                let g = granted.entry(p.clone()).or_default();
                for op in acl.operations.iter().filter(|o| *o == "Read" || *o == "Write") {
                    for t in &acl.topics {
                        g.insert((op.clone(), t.clone()));
                    }
                    for group in &acl.groups {
                        g.insert((op.clone(), format!("group {group}")));
                    }
                }
            }
        }
        for (principal, got) in &granted {
            checked += 1;
            let want = needs(principal);
            // A group ACL is a prefix: it covers the groups that start with it.
            let covered = |(op, res): &(String, String)| {
                got.contains(&(op.clone(), res.clone()))
                    || got
                        .iter()
                        .any(|(o, g)| o == op && g.starts_with("group ") && res.starts_with(g.as_str()))
            };
            let missing: Vec<_> = want.iter().filter(|w| !covered(w)).collect();
            assert!(missing.is_empty(), "{file}: {principal} lacks {missing:?}");
            let extra: Vec<_> = got
                .iter()
                .filter(|(op, res)| {
                    let used = want.contains(&(op.clone(), res.clone()))
                        || (res.starts_with("group ")
                            && want.iter().any(|(o, w)| o == op && w.starts_with(res.as_str())));
                    !used
                })
                .collect();
            assert!(
                extra.is_empty(),
                "{file}: {principal} is granted more than it uses: {extra:?}"
            );
        }
        if file.ends_with("docs/security.md") {
            for r in &roles {
                assert!(granted.contains_key(*r), "docs/security.md has no ACL command for {r}");
            }
        }
    }
    assert!(checked >= 9, "{checked} principals checked");
}

/// One command of the `opptak` binary: whether it has subcommands, and
/// whether it takes positional arguments.
#[derive(Clone, Copy, Debug)]
struct CliCommand {
    subcommands: bool,
    positional: bool,
}

/// The commands of the `opptak` binary as clap builds them: every path of
/// subcommand names (`["ki"]`, `["keys", "telephony-init"]`), read from
/// `--help` (so the test sees exactly the tree the binary parses).
fn cli_commands() -> std::collections::BTreeMap<Vec<String>, CliCommand> {
    fn help(path: &[String]) -> (Vec<String>, bool) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_opptak"))
            .args(path)
            .arg("--help")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        assert!(out.status.success(), "opptak {path:?} --help: {out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        let subs = help
            .lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_owned)
            .collect();
        // `Usage: opptak ki show [OPTIONS] <CALL>`: an argument besides
        // `[OPTIONS]` and `<COMMAND>`.
        let usage = help.lines().find(|l| l.starts_with("Usage: ")).unwrap_or_default();
        let positional = usage
            .split_whitespace()
            .any(|w| (w.starts_with('<') || w.starts_with('[')) && !["[OPTIONS]", "<COMMAND>"].contains(&w));
        (subs, positional)
    }
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let (subs, positional) = help(&path);
        out.insert(
            path.clone(),
            CliCommand {
                subcommands: !subs.is_empty(),
                positional,
            },
        );
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
    }
    out
}

/// Every Markdown file whose commands an operator follows: README.md,
/// deploy/README.md and docs/ (with its subdirectories).
fn operator_docs() -> Vec<std::path::PathBuf> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = vec![
        std::path::PathBuf::from(format!("{root}/README.md")),
        std::path::PathBuf::from(format!("{root}/deploy/README.md")),
    ];
    let mut dirs = vec![std::path::PathBuf::from(format!("{root}/docs"))];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `opptak …` commands a Markdown text names: in inline code (joined
/// across line breaks) and in the lines of fenced blocks (shell comments
/// dropped). Each is the words after `opptak` up to the first option,
/// placeholder or argument; `a|b` alternatives are split.
fn named_commands(text: &str) -> Vec<Vec<String>> {
    let mut snippets: Vec<String> = Vec::new();
    let mut fenced = false;
    let mut prose = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let code = if line.trim_start().starts_with('#') {
                ""
            } else {
                line.split(" # ").next().unwrap_or(line)
            };
            snippets.push(code.to_owned());
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    snippets.extend(
        prose
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")),
    );
    let mut out = Vec::new();
    for s in snippets {
        let words: Vec<&str> = s.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            // `opptak` as a command (not `opptak.telephony.v1`, `opptak-recorder`).
            let after = |p: &str| matches!(p, "$" | "&&" | ";" | "|" | "exec" | "--" | "sudo") || p.contains('=');
            let is_program = (*w == "opptak" || w.ends_with("/opptak")) && (i == 0 || after(words[i - 1]));
            if !is_program {
                continue;
            }
            let mut path = vec![Vec::new()];
            for next in &words[i + 1..] {
                let plain = next.trim_end_matches([',', '.', ':', ')']).replace('\\', "");
                let word = plain.starts_with(|c: char| c.is_ascii_lowercase())
                    && plain
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '|');
                if !word {
                    break;
                }
                path = path
                    .into_iter()
                    .flat_map(|p: Vec<String>| {
                        plain.split('|').filter(|a| !a.is_empty()).map(move |a| {
                            let mut p = p.clone();
                            p.push(a.to_owned());
                            p
                        })
                    })
                    .collect();
            }
            out.extend(path.into_iter().filter(|p| !p.is_empty()));
        }
    }
    out
}

/// Every `opptak <command> [<subcommand> …]` README.md, deploy/README.md
/// and docs/ name exists in the binary's command tree: a command the guides
/// name but the binary lacks (`opptak deadletters export`: `deadletters`
/// takes no argument) fails here. Words after a command that takes
/// positional arguments are those and not checked.
#[test]
fn commands_named_in_the_docs_exist() {
    let tree = cli_commands();
    assert!(tree.len() > 30, "{tree:?}");
    assert!(!tree[&vec!["deadletters".to_owned()]].positional);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in operator_docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        for words in named_commands(&text) {
            checked += 1;
            let mut path: Vec<String> = Vec::new();
            for w in &words {
                let here = tree[&path];
                if !here.subcommands && here.positional {
                    break; // the rest are its arguments
                }
                path.push(w.clone());
                if !tree.contains_key(&path) {
                    wrong.push(format!("{}: opptak {}", file.display(), path.join(" ")));
                    break;
                }
            }
        }
    }
    assert!(checked > 50, "{checked} commands found in the docs");
    assert!(
        wrong.is_empty(),
        "commands the binary does not have:\n{}",
        wrong.join("\n")
    );
    // The parser finds what the test is for.
    assert_eq!(
        named_commands("Run `opptak deadletters export --out d`, then\n```sh\n$ opptak keys telephony-init --out k.json # x\n```\n`opptak topics create|check`"),
        [
            vec!["keys", "telephony-init"],
            vec!["deadletters", "export"],
            vec!["topics", "create"],
            vec!["topics", "check"]
        ]
    );
}

/// A `.proto` file's messages with their fields (oneof members included),
/// and its enums with their values.
fn proto_fields(proto: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    // The enclosing messages and enums; `None` for a oneof.
    let mut stack: Vec<Option<String>> = Vec::new();
    for line in proto.lines().map(|l| l.split("//").next().unwrap_or("").trim()) {
        if let Some(head) = line.strip_prefix("message ").or_else(|| line.strip_prefix("enum ")) {
            let name = head.trim_end_matches('{').trim().to_owned();
            out.entry(name.clone()).or_default();
            stack.push(Some(name));
        } else if line.starts_with("oneof ") {
            stack.push(None);
        } else if line == "}" {
            stack.pop();
        } else if let (Some(owner), Some((lhs, _))) = (stack.iter().rev().flatten().next(), line.split_once(" = ")) {
            if !line.starts_with("reserved") {
                let field = lhs.rsplit(' ').next().unwrap_or_default().to_owned();
                out.get_mut(owner).unwrap().insert(field);
            }
        }
    }
    out
}

/// Every field, message and enum docs/asyncapi.yaml names outside its
/// inlined `.proto` copies (descriptions, summaries, comments) exists in
/// proto/: a field the proto reserved (`original_value`) fails here.
#[test]
fn asyncapi_names_only_fields_the_proto_has() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = env!("CARGO_MANIFEST_DIR");
    let mut messages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in ["telephony.proto", "messages.proto", "events.proto"] {
        let proto = std::fs::read_to_string(format!("{root}/proto/opptak/v1/{file}")).unwrap();
        messages.extend(proto_fields(&proto));
    }
    assert!(
        messages["DeadLetter"].contains("sealed_original"),
        "{:?}",
        messages["DeadLetter"]
    );
    assert!(!messages["DeadLetter"].contains("original_value"));
    assert!(
        messages["TelephonyEvent"].contains("ki_opt_out"),
        "oneof members are fields"
    );
    let fields: BTreeSet<&str> = messages.values().flatten().map(String::as_str).collect();
    // The YAML without the `schema: |` blocks (the proto copies, checked by
    // asyncapi_inlines_the_current_proto_definitions).
    let yaml = std::fs::read_to_string(format!("{root}/docs/asyncapi.yaml")).unwrap();
    let mut prose = String::new();
    let mut schema_indent: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(i) = schema_indent {
            if line.trim().is_empty() || indent > i {
                continue;
            }
            schema_indent = None;
        }
        if line.trim_start().starts_with("schema: |") {
            schema_indent = Some(indent);
            continue;
        }
        prose.push_str(line);
        prose.push('\n');
    }
    // Words in backticks that are not fields: the key `unknown`, the `ki`
    // key class, the `messages` role, the word `schema` of the header.
    let not_fields = ["unknown", "ki", "messages", "schema", "opptak"];
    let mut unknown = Vec::new();
    let mut checked = 0;
    for code in prose.split('`').skip(1).step_by(2) {
        let dotted_lowercase = code.contains('.') && !code.starts_with(|c: char| c.is_ascii_uppercase());
        if dotted_lowercase || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue; // topics, Kafka settings, config keys, paths, patterns
        }
        checked += 1;
        let ok = match code.split_once('.') {
            Some((msg, field)) => messages.get(msg).is_some_and(|f| f.contains(field)),
            None if code.starts_with(|c: char| c.is_ascii_uppercase()) => messages.contains_key(code),
            None => fields.contains(code) || not_fields.contains(&code),
        };
        if !ok {
            unknown.push(code.to_owned());
        }
    }
    // Unquoted field names (`exactly one of call_started, audio_chunk, …`).
    for word in prose.split(|c: char| !(c.is_ascii_alphanumeric() || "_.=-`/".contains(c))) {
        if word.contains('_')
            && word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            checked += 1;
            if !fields.contains(word) {
                unknown.push(word.to_owned());
            }
        }
    }
    assert!(checked > 30, "{checked} names checked");
    assert!(
        unknown.is_empty(),
        "docs/asyncapi.yaml names what proto/ does not have: {unknown:?}"
    );
}

/// docs/asyncapi.yaml's topic bindings give each topic the `retention.ms`
/// opptak creates it with (`opptak::topics` under the default policy).
#[test]
fn asyncapi_topic_bindings_are_the_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let yaml = std::fs::read_to_string(format!("{root}/docs/asyncapi.yaml")).unwrap();
    let config = opptak::config::Config::load_from(None, &[]).unwrap();
    let policy = opptak_domain::retention::Policy::default_policy();
    let channels = yaml.split("\noperations:").next().unwrap();
    let mut seen = 0;
    for block in channels.split("\n    address: ").skip(1) {
        let topic = block.lines().next().unwrap().trim();
        let t = opptak::topics::TOPICS
            .iter()
            .find(|t| t.base == topic)
            .unwrap_or_else(|| panic!("docs/asyncapi.yaml: channel {topic} is no topic of opptak::topics"));
        if let Some(line) = block.lines().find(|l| l.trim_start().starts_with("retention.ms:")) {
            seen += 1;
            let have: i64 = line.split(':').nth(1).unwrap().trim().parse().unwrap();
            assert_eq!(
                Some(have),
                t.spec(&config, &policy).retention_ms,
                "docs/asyncapi.yaml: {topic} retention.ms"
            );
        }
    }
    assert!(seen >= 5, "{seen} retention bindings");
}
