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
    for i in (1..=13).chain([15]) {
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
    let policy = opptak_domain::retention::Policy::default_policy();
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
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", t.base)))
            .unwrap_or_else(|| panic!("docs/security.md has no retention row for {}", t.base));
        let row = cells(row);
        let spec = t.spec(&config, &policy);
        let human = |ms: Option<i64>| opptak::topics::human(ms.unwrap());
        assert!(
            row[3].replace(' ', "").contains(&human(spec.retention_ms)),
            "{}: {row:?}",
            t.base
        );
        assert!(
            row[4].replace(' ', "").contains(&human(spec.segment_ms)),
            "{}: {row:?}",
            t.base
        );
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
