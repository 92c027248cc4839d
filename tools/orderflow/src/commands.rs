//! What each subcommand does: checks the local input (credentials, `--file`), calls
//! [`crate::api`], hands the reply to [`crate::output`], and turns every way of
//! failing into a [`Failure`] with its documented exit code (see `cli::exit`).

use std::{fmt, io::Read, path::Path, time::Duration};

use serde_json::{Value, json};

use crate::{
    api::{self, Credentials},
    cli::{Cli, Command, CreateArgs, Global, ListArgs, OrdersCommand, exit},
    output,
};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Local input is wrong or missing (exit 2, like clap's own usage errors).
    Usage(String),
    /// The request failed; see [`api::Error`].
    Api(api::Error),
    /// Writing the output failed (a closed pipe is not reported).
    Output(std::io::Error),
}

impl From<api::Error> for Failure {
    fn from(error: api::Error) -> Self {
        Failure::Api(error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Output(error)
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => exit::USAGE,
            Failure::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            Failure::Output(_) => exit::REFUSED,
            Failure::Api(error) => match error.status() {
                Some(status) if status == reqwest::StatusCode::NOT_FOUND => exit::NOT_FOUND,
                Some(status) if status.is_client_error() => exit::REFUSED,
                _ => exit::UNAVAILABLE,
            },
        }
    }

    /// The stderr message, or `None` when there is nothing to say (closed pipe).
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => None,
            other => Some(other.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => write!(f, "error: {message}"),
            Failure::Api(error) => f.write_str(&output::render_error(error)),
            Failure::Output(error) => write!(f, "error: cannot write the output: {error}"),
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.global.json;
    match cli.command {
        Command::Token(args) => {
            let client = client(&cli.global)?;
            let reply = client.token(args.scope.as_deref()).await?;
            output::token(&reply, json)?;
        }
        Command::Orders(OrdersCommand::Create(args)) => {
            let body = order_body(&args)?;
            let mut client = client(&cli.global)?;
            let reply = client.create_order(&body, args.idempotency_key.as_deref()).await?;
            output::order(&reply, json)?;
        }
        Command::Orders(OrdersCommand::Get { id }) => {
            let reply = client(&cli.global)?.get_order(id).await?;
            output::order(&reply, json)?;
        }
        Command::Orders(OrdersCommand::List(args)) => list(client(&cli.global)?, &args, json).await?,
        Command::Orders(OrdersCommand::Watch { id, max_reconnects }) => {
            client(&cli.global)?
                .watch(id, max_reconnects, |update| output::watch_update(update, json).map_err(Failure::from))
                .await?;
        }
    }
    Ok(())
}

fn client(global: &Global) -> Result<api::Client, Failure> {
    let missing =
        |what: &str, var: &str| Failure::Usage(format!("no client {what}: set {var} or pass --client-{what}"));
    let client_id =
        global.client_id.clone().filter(|s| !s.is_empty()).ok_or_else(|| missing("id", "ORDERFLOW_CLIENT_ID"))?;
    let client_secret = global
        .client_secret
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("secret", "ORDERFLOW_CLIENT_SECRET"))?;
    let credentials = Credentials { client_id, client_secret };
    Ok(api::Client::new(&global.url, credentials, Duration::from_secs(global.timeout))?)
}

async fn list(mut client: api::Client, args: &ListArgs, json: bool) -> Result<(), Failure> {
    let mut cursor = args.cursor.clone();
    let mut raw_pages = Vec::new();
    let mut orders = Vec::new();
    loop {
        let reply = client.list_orders(args.limit, cursor.as_deref()).await?;
        raw_pages.push(reply.raw);
        orders.extend(reply.value.data);
        let next = reply.value.next_cursor;
        if !args.all || next.is_none() {
            cursor = next;
            break;
        }
        if next == cursor {
            return Err(api::Error::InvalidResponse {
                url: "/orders".into(),
                detail: "the server returned the same next_cursor twice".into(),
            }
            .into());
        }
        cursor = next;
    }
    if json {
        output::pages_json(&raw_pages)?;
    } else {
        output::page(&orders, cursor.as_deref())?;
    }
    Ok(())
}

/// The `POST /orders` body: the `--file` JSON as is, or built from the flags.
fn order_body(args: &CreateArgs) -> Result<Value, Failure> {
    if let Some(path) = &args.file {
        return read_body_file(path);
    }
    let required = |value: &Option<String>, flag: &str| {
        value.clone().ok_or_else(|| Failure::Usage(format!("{flag} is required unless --file is given")))
    };
    Ok(json!({
        "currency": args.currency,
        "items": args.items,
        "shipping_address": {
            "name": required(&args.name, "--name")?,
            "line1": required(&args.line1, "--line1")?,
            "line2": args.line2,
            "city": required(&args.city, "--city")?,
            "postal_code": required(&args.postal_code, "--postal-code")?,
            "country": required(&args.country, "--country")?,
        },
    }))
}

fn read_body_file(path: &Path) -> Result<Value, Failure> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the order from stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    let body: Value =
        serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("{name} is not valid JSON: {e}")))?;
    if !body.is_object() {
        return Err(Failure::Usage(format!("{name} must hold a JSON object (the order body)")));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn create_args(args: &[&str]) -> CreateArgs {
        let cli = Cli::try_parse_from(["orderflow", "orders", "create"].into_iter().chain(args.iter().copied()))
            .expect("valid arguments");
        let Command::Orders(OrdersCommand::Create(args)) = cli.command else { panic!("wrong command") };
        args
    }

    #[test]
    fn body_from_flags_matches_the_contract() {
        let args = create_args(&[
            "--item",
            "SKU-123:2:1299",
            "--currency",
            "GBP",
            "--name",
            "Ada Lovelace",
            "--line1",
            "12 Example Street",
            "--city",
            "London",
            "--postal-code",
            "N1 9GU",
            "--country",
            "GB",
        ]);
        let body = order_body(&args).expect("body");
        assert_eq!(
            body,
            json!({"currency": "GBP",
                   "items": [{"sku": "SKU-123", "quantity": 2, "unit_price_minor": 1299}],
                   "shipping_address": {"name": "Ada Lovelace", "line1": "12 Example Street", "line2": null,
                                        "city": "London", "postal_code": "N1 9GU", "country": "GB"}})
        );
    }

    #[test]
    fn unreadable_or_invalid_files_are_usage_errors() {
        let args = create_args(&["--file", "/nonexistent/order.json"]);
        let failure = order_body(&args).expect_err("missing file");
        assert_eq!(failure.exit_code(), exit::USAGE);
        assert!(failure.to_string().contains("/nonexistent/order.json"));

        let dir = std::env::temp_dir().join(format!("orderflow-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bad.json");
        std::fs::write(&file, "[1, 2]").expect("write");
        let failure = read_body_file(&file).expect_err("not an object");
        assert!(failure.to_string().contains("JSON object"));
        std::fs::write(&file, "{nope").expect("write");
        let failure = read_body_file(&file).expect_err("not JSON");
        assert!(failure.to_string().contains("not valid JSON"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_codes_follow_the_status() {
        let code = |status: u16| {
            let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::IM_A_TEAPOT);
            Failure::Api(api::classify_error(status, "u", "")).exit_code()
        };
        assert_eq!(code(422), exit::REFUSED);
        assert_eq!(code(401), exit::REFUSED);
        assert_eq!(code(409), exit::REFUSED);
        assert_eq!(code(404), exit::NOT_FOUND);
        assert_eq!(code(500), exit::UNAVAILABLE);
        assert_eq!(code(503), exit::UNAVAILABLE);
        assert_eq!(Failure::Usage("x".into()).exit_code(), exit::USAGE);
        let pipe = Failure::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!((pipe.exit_code(), pipe.message()), (exit::OK, None));
    }
}
