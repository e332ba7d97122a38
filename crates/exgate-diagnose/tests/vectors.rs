//! Every failure example of the seed documents and of the signature reference is a vector whose
//! top cause must be right. All vectors are run; failures are reported together.

use exgate_diagnose::explain_text;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vector: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    input: String,
    top: String,
    #[serde(default)]
    questions: bool,
}

fn run(file: &str, src: &str) -> Vec<String> {
    let parsed: File = toml::from_str(src).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(!parsed.vector.is_empty(), "{file}: no vectors");
    let mut failures = Vec::new();
    for v in parsed.vector {
        let d = explain_text(&v.input, None);
        let got: Vec<(String, f32)> = d
            .causes
            .iter()
            .map(|c| (c.id.clone(), c.confidence))
            .collect();
        if got.first().map(|c| c.0.as_str()) != Some(v.top.as_str()) {
            failures.push(format!(
                "{file}/{}: expected top {}, got {:?}",
                v.name,
                v.top,
                got.iter().take(4).collect::<Vec<_>>()
            ));
            continue;
        }
        let top = &d.causes[0];
        if top.evidence.is_empty() || top.fix.is_empty() || top.explanation.is_empty() {
            failures.push(format!(
                "{file}/{}: top cause without evidence/fix/explanation",
                v.name
            ));
        }
        if v.questions && d.decisive_questions.is_empty() {
            failures.push(format!(
                "{file}/{}: thin evidence but no decisive question",
                v.name
            ));
        }
    }
    failures
}

#[test]
fn seed_and_signature_vectors_rank_the_right_cause_first() {
    let mut failures = run("seeds.toml", include_str!("vectors/seeds.toml"));
    failures.extend(run(
        "signatures.toml",
        include_str!("vectors/signatures.toml"),
    ));
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn nothing_wrong_means_no_cause() {
    let d = explain_text("HTTP/1.1 200 OK\nContent-Type: text/xml\n\n<ok/>", None);
    assert!(d.causes.is_empty(), "{:?}", d.causes);
}
