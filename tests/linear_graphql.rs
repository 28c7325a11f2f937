//! Every GraphQL operation Chime sends to Linear (`src/linear/graphql/`) validates against Linear's
//! published schema (`../shared/linear/schema.graphql`, or the file `CHIME_LINEAR_SCHEMA` names).
//! Where that file is absent (a user's machine), the test says so and passes.

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};

#[test]
fn every_operation_validates_against_linears_schema() {
    let path = std::env::var("CHIME_LINEAR_SCHEMA").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/linear/schema.graphql"
        )
        .to_string()
    });
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipped: Linear's schema is not at {path} (it ships with the developers' shared \
             material; set CHIME_LINEAR_SCHEMA to check against another copy)"
        );
        return;
    };
    let schema = match Schema::parse_and_validate(text.as_str(), "schema.graphql") {
        Ok(s) => s,
        // Linear's published schema is not perfectly valid under every rule; what matters is that
        // it parses, and that operations are checked against its types.
        Err(with_errors) => Valid::assume_valid(with_errors.partial),
    };
    let mut checked = 0;
    for (name, op) in chime::linear::graphql::OPERATIONS {
        if let Err(e) =
            ExecutableDocument::parse_and_validate(&schema, *op, format!("{name}.graphql"))
        {
            panic!(
                "{name}.graphql does not validate against Linear's schema:\n{}",
                e.errors
            );
        }
        checked += 1;
    }
    // A misspelt field must fail, or the check above proves nothing.
    let wrong = "query Viewer { viewer { id nmae } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, wrong, "wrong.graphql").is_err());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/linear/graphql");
    let files = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        checked, files,
        "every file in {dir} is listed in linear::graphql::OPERATIONS"
    );
}
