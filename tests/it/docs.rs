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
    for file in ["telephony.proto", "events.proto"] {
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
    for i in 1..=12 {
        let r = opptak_proto::v1::DeadLetterReason::try_from(i).unwrap();
        let name = r.as_str_name().trim_start_matches("DEAD_LETTER_REASON_");
        assert!(
            guide.contains(name),
            "docs/telephony-contract.md does not explain {name}"
        );
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
