//! Schema fuzzing of the order-service: schemathesis generates requests from
//! the service's own OpenAPI document, valid and invalid ones, and checks every
//! response against it with every check enabled (`--checks all`): no 5xx, every
//! status, header and body documented, valid data accepted, invalid data
//! refused, and the live stream's events as declared. A bounded run (examples
//! per operation and total time) against real processes, with a valid token.
//!
//! `tests/fuzz/schemathesis.toml` hands the token to the document's `bearer`
//! scheme, and `tests/fuzz/hooks.py` keeps generated `Idempotency-Key`s unique (a key is
//! state: reused with another body it is 422 by design).
//!
//! schemathesis is installed by `scripts/fuzz-tools.sh` (pinned, into a venv
//! under ~/.cache/orderflow), which `make test` runs first; `SCHEMATHESIS` names
//! another binary. Without it the test says so and passes. `FUZZ_SEED` changes
//! the (otherwise fixed) seed, `FUZZ_EXAMPLES` the examples per operation.

use std::{path::PathBuf, process::Stdio, time::Duration};

use e2e::{Options, System};

/// The schemathesis binary: `SCHEMATHESIS`, or the venv of scripts/fuzz-tools.sh.
fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    let state = std::env::var_os("ORDERFLOW_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/orderflow")))?;
    std::fs::read_dir(state.join("fuzz-tools"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|venv| venv.join(".complete").exists())
        .map(|venv| venv.join("bin/schemathesis"))
        .find(|bin| bin.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_holds_under_schema_fuzzing() {
    let Some(schemathesis) = schemathesis() else {
        eprintln!(
            "SKIPPED the_openapi_document_holds_under_schema_fuzzing: schemathesis is not installed \
             (scripts/fuzz-tools.sh installs it; `make test` runs that first)"
        );
        return;
    };
    let sys = System::start(Options::default()).await;
    let token = sys.token().await;
    let seed = std::env::var("FUZZ_SEED").unwrap_or_else(|_| "20261129".to_owned());
    let examples = std::env::var("FUZZ_EXAMPLES").unwrap_or_else(|_| "20".to_owned());
    let schema = format!("{}/openapi.json", sys.api());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/schemathesis.toml");
    let args = [
        "--config-file",
        config,
        "run",
        schema.as_str(),
        "--checks",
        "all",
        "--max-examples",
        examples.as_str(),
        "--max-time",
        "90",
        "--request-timeout",
        "5",
        "--workers",
        "1",
        "--seed",
        seed.as_str(),
        "--no-color",
        "--warnings",
        "off",
    ];
    let run = tokio::process::Command::new(&schemathesis)
        .args(args)
        .env("ORDERFLOW_FUZZ_TOKEN", &token)
        .env("SCHEMATHESIS_HOOKS", concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/hooks.py"))
        .stdin(Stdio::null())
        // Its example cache (.schemathesis/) goes to the temp dir, never the checkout.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis ends within its time budget")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures (seed {seed}; rerun with FUZZ_SEED={seed}):\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}
