//! The output guard on its corpus (`tests/data/secrets/`): every positive is caught, no near miss
//! is touched; precision and recall are printed per kind (`cargo test --test guard -- --nocapture`).

use chime::guard::Guard;
use serde_json::Value;
use std::collections::BTreeMap;

fn lines(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/secrets/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn corpus_precision_and_recall() {
    let guard = Guard::new(&[], vec![]).unwrap();
    // kind → (caught, missed)
    let mut recall: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut missed = vec![];
    for p in lines("positives.jsonl") {
        let (kind, secret, text) = (
            p["kind"].as_str().unwrap(),
            p["secret"].as_str().unwrap(),
            p["text"].as_str().unwrap(),
        );
        let (out, hits) = guard.scan(text);
        let entry = recall.entry(kind.to_string()).or_default();
        if out.contains(secret) || hits.is_empty() {
            entry.1 += 1;
            missed.push(format!("{kind}: {text:?} -> {out:?}"));
        } else {
            entry.0 += 1;
        }
        assert!(
            out.len() <= text.len(),
            "a redaction grew the text: {out:?}"
        );
    }
    let mut touched = vec![];
    let negatives = lines("negatives.jsonl");
    for n in &negatives {
        let text = n["text"].as_str().unwrap();
        let (out, hits) = guard.scan(text);
        if out != text {
            touched.push(format!("{}: {hits:?} -> {out:?}", n["why"]));
        }
    }
    let caught: u32 = recall.values().map(|r| r.0).sum();
    let total: u32 = recall.values().map(|r| r.0 + r.1).sum();
    println!(
        "output guard corpus (rules v{}):",
        chime::guard::rules::RULES_VERSION
    );
    for (kind, (c, m)) in &recall {
        println!("  {kind:<18} recall {c}/{}", c + m);
    }
    let false_positives = touched.len() as u32;
    println!(
        "  recall {caught}/{total} = {:.3}; precision {caught}/{} = {:.3} ({} near misses, {false_positives} touched)",
        f64::from(caught) / f64::from(total),
        caught + false_positives,
        f64::from(caught) / f64::from(caught + false_positives),
        negatives.len()
    );
    assert!(
        missed.is_empty(),
        "positives missed:\n{}",
        missed.join("\n")
    );
    assert!(
        touched.is_empty(),
        "near misses touched:\n{}",
        touched.join("\n")
    );
}

#[test]
fn every_kind_is_in_the_corpus() {
    let kinds: Vec<String> = lines("positives.jsonl")
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect();
    for rule in chime::guard::rules::RULES {
        assert!(
            kinds.iter().any(|k| k == rule.kind),
            "no positive for {}",
            rule.kind
        );
    }
}
