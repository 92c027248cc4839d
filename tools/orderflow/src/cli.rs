//! The command line of `orderflow`, as clap derive definitions: global options
//! (URL, client credentials, `--json`), the subcommands with their help texts and
//! examples, the documented exit codes, and the parsers for argument values that
//! clap cannot check alone (`--item SKU:QTY:PRICE_MINOR`, `--idempotency-key`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use uuid::Uuid;

/// Exit codes, shown in `--help` and used by `main`.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The server refused the request (HTTP 4xx other than 404).
    pub const REFUSED: u8 = 1;
    /// Bad arguments, missing credentials, unreadable `--file` (clap uses 2 too).
    pub const USAGE: u8 = 2;
    /// The server could not be reached, failed (HTTP 5xx) or answered off-contract.
    pub const UNAVAILABLE: u8 = 3;
    /// The order (or route) does not exist for this client (HTTP 404).
    pub const NOT_FOUND: u8 = 4;
}

const MAIN_AFTER_HELP: &str = "\
Examples:
  export ORDERFLOW_CLIENT_ID=demo ORDERFLOW_CLIENT_SECRET=demo-secret
  orderflow token
  orderflow orders create --item SKU-123:2:1299 --name 'Ada Lovelace' \\
      --line1 '12 Example Street' --city London --postal-code 'N1 9GU' --country GB
  orderflow orders get 0199a8f2-5a3c-7d41-9f0e-2b6c1e0d4a77
  orderflow orders list --limit 10
  orderflow --json orders list --all | jq -r '.data[].id'
  orderflow orders watch 0199a8f2-5a3c-7d41-9f0e-2b6c1e0d4a77

Exit codes:
  0  success
  1  the server refused the request (HTTP 4xx other than 404: invalid fields, bad credentials, ...)
  2  usage error: bad arguments, missing credentials, unreadable --file
  3  cannot reach the server, the server failed (HTTP 5xx) or answered off-contract,
     or `orders watch` lost the stream more often than --max-reconnects
  4  not found (HTTP 404)";

const CREATE_AFTER_HELP: &str = "\
Prices are whole numbers in the currency's minor unit: 1299 is 12.99 EUR.

Examples:
  orderflow orders create --item SKU-123:2:1299 --item SKU-9:1:500 \\
      --name 'Ada Lovelace' --line1 '12 Example Street' --city London \\
      --postal-code 'N1 9GU' --country GB --idempotency-key my-first-order
  orderflow orders create --file order.json
  orderflow --json orders create --file - < order.json | jq -r .id";

#[derive(Debug, Parser)]
#[command(
    name = "orderflow",
    version,
    about = "Command-line client for the orderflow order API: get tokens, place, read, list and follow orders.",
    after_help = MAIN_AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Base URL of the order-service.
    #[arg(long, env = "ORDERFLOW_URL", default_value = "http://127.0.0.1:8080", global = true, value_name = "URL")]
    pub url: reqwest::Url,
    /// OAuth2 client id (client credentials grant).
    #[arg(long, env = "ORDERFLOW_CLIENT_ID", global = true, value_name = "ID")]
    pub client_id: Option<String>,
    /// OAuth2 client secret; prefer the environment variable, flags show up in `ps`.
    #[arg(long, env = "ORDERFLOW_CLIENT_SECRET", hide_env_values = true, global = true, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// Machine output: the server's JSON on stdout (one JSON object per line for `orders watch`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Longest wait for one request, in seconds (the `orders watch` stream itself has no limit).
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per run; boxing buys nothing")]
pub enum Command {
    /// Get an access token with the client credentials and print it.
    ///
    /// Prints the token alone on stdout (`TOKEN=$(orderflow token)`), its scope and
    /// lifetime on stderr; with --json, the token response.
    Token(TokenArgs),
    /// Place, read, list and follow orders (a token is fetched automatically).
    #[command(subcommand)]
    Orders(OrdersCommand),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Ask for fewer scopes than the client has, e.g. "orders:read".
    #[arg(long)]
    pub scope: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Place an order from --item and address flags, or from a JSON file.
    #[command(after_help = CREATE_AFTER_HELP)]
    Create(CreateArgs),
    /// Show one order.
    Get {
        /// The order id.
        id: Uuid,
    },
    /// List your orders, newest first.
    List(ListArgs),
    /// Follow an order's status live until it is delivered.
    ///
    /// Prints one line per status change (with --json, one JSON object per line:
    /// id, status, at, carrier, tracking_number) and exits 0 after DELIVERED. A dropped
    /// connection is resumed after the last event seen (Last-Event-ID).
    Watch {
        /// The order id.
        id: Uuid,
        /// How many times in a row to reconnect after the stream drops before giving up.
        #[arg(long, default_value_t = 5, value_name = "N")]
        max_reconnects: u32,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A line item, price in minor units; repeat for more items.
    #[arg(long = "item", value_name = "SKU:QTY:PRICE_MINOR", value_parser = parse_item,
          required_unless_present = "file", conflicts_with = "file")]
    pub items: Vec<Item>,
    /// Send this JSON file as the whole request body instead of the flags; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// ISO 4217 currency code.
    #[arg(long, default_value = "EUR", conflicts_with = "file")]
    pub currency: String,
    /// Recipient's name.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub name: Option<String>,
    /// First address line.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub line1: Option<String>,
    /// Second address line.
    #[arg(long, conflicts_with = "file")]
    pub line2: Option<String>,
    /// City.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub city: Option<String>,
    /// Postal code.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. GB.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub country: Option<String>,
    /// Makes a retry safe: the same key and body return the first order instead of a new one.
    #[arg(long, value_name = "KEY", value_parser = parse_idempotency_key)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Orders per page.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Start after this page (the `next_cursor` of the previous one).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Follow `next_cursor` to the last page and show every order.
    #[arg(long)]
    pub all: bool,
}

/// One `--item`, already shaped as the API's line item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: u64,
}

/// Parses `SKU:QTY:PRICE_MINOR`, e.g. `SKU-123:2:1299`. The SKU is everything before
/// the last two colons; the server checks the limits (SKU characters, 1..=999, ...).
pub fn parse_item(s: &str) -> Result<Item, String> {
    let mut parts = s.rsplitn(3, ':');
    let (Some(price), Some(quantity), Some(sku)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("expected SKU:QTY:PRICE_MINOR, e.g. SKU-123:2:1299 (got {s:?})"));
    };
    let sku = sku.trim();
    if sku.is_empty() {
        return Err("the SKU before the first ':' is empty".into());
    }
    let quantity: u32 = quantity.trim().parse().map_err(|_| format!("quantity {quantity:?} is not a whole number"))?;
    if quantity == 0 {
        return Err("quantity must be at least 1".into());
    }
    let unit_price_minor: u64 = price
        .trim()
        .parse()
        .map_err(|_| format!("price {price:?} is not a whole number of minor units (write 1299 for 12.99)"))?;
    Ok(Item { sku: sku.to_owned(), quantity, unit_price_minor })
}

/// An `Idempotency-Key` must be 1..=255 printable ASCII characters.
pub fn parse_idempotency_key(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 {
        return Err("must be 1 to 255 characters long".into());
    }
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("may only contain printable ASCII characters".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, error::ErrorKind};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orderflow").chain(args.iter().copied()))
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn item_parses() {
        assert_eq!(
            parse_item("SKU-123:2:1299"),
            Ok(Item { sku: "SKU-123".into(), quantity: 2, unit_price_minor: 1299 })
        );
        assert_eq!(
            parse_item(" a.b_c : 999 : 0 ").map(|i| (i.sku, i.quantity, i.unit_price_minor)),
            Ok(("a.b_c".into(), 999, 0))
        );
        // Only the last two colons separate; the server judges the SKU.
        assert_eq!(parse_item("A:B:1:5").map(|i| i.sku), Ok("A:B".into()));
    }

    #[test]
    fn item_errors_say_what_is_wrong() {
        let err = |s: &str| parse_item(s).err().unwrap_or_default();
        assert!(err("SKU-123").contains("expected SKU:QTY:PRICE_MINOR"));
        assert!(err("SKU-123:2").contains("expected SKU:QTY:PRICE_MINOR"));
        assert!(err(":2:1299").contains("SKU"));
        assert!(err("SKU:two:1299").contains("quantity \"two\""));
        assert!(err("SKU:-1:1299").contains("quantity"));
        assert!(err("SKU:0:1299").contains("at least 1"));
        assert!(err("SKU:1:12.99").contains("minor units"));
        assert!(err("SKU:1:-5").contains("price"));
        assert!(err("SKU:1:").contains("price"));
    }

    #[test]
    fn idempotency_key_is_checked() {
        assert_eq!(parse_idempotency_key("my-key 1"), Ok("my-key 1".into()));
        assert!(parse_idempotency_key("").is_err());
        assert!(parse_idempotency_key(&"k".repeat(256)).is_err());
        assert!(parse_idempotency_key("tab\there").is_err());
        assert!(parse_idempotency_key("ключ").is_err());
    }

    #[test]
    fn create_from_flags() {
        let cli = parse(&[
            "orders",
            "create",
            "--item",
            "A:1:100",
            "--item",
            "B:2:50",
            "--name",
            "Ada",
            "--line1",
            "1 St",
            "--city",
            "London",
            "--postal-code",
            "N1",
            "--country",
            "GB",
            "--json",
        ])
        .expect("valid arguments");
        assert!(cli.global.json);
        let Command::Orders(OrdersCommand::Create(args)) = cli.command else { panic!("wrong command") };
        assert_eq!(args.items.len(), 2);
        assert_eq!(args.currency, "EUR");
        assert_eq!(args.line2, None);
    }

    #[test]
    fn create_needs_items_and_address_unless_file() {
        let err = parse(&["orders", "create", "--item", "A:1:100"]).expect_err("address missing");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--name"));
        assert!(parse(&["orders", "create", "--file", "order.json"]).is_ok());
        let err = parse(&["orders", "create", "--file", "o.json", "--item", "A:1:1"]).expect_err("conflict");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_item_is_a_usage_error() {
        let err = parse(&["orders", "create", "--item", "A:x:1", "--file", "o.json"]).expect_err("bad item");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(err.to_string().contains("quantity \"x\""));
        assert_eq!(err.exit_code(), i32::from(exit::USAGE));
    }

    #[test]
    fn ids_and_limits_are_validated() {
        assert!(parse(&["orders", "get", "not-a-uuid"]).is_err());
        assert!(parse(&["orders", "get", "0199a8f2-5a3c-7d41-9f0e-2b6c1e0d4a77"]).is_ok());
        assert!(parse(&["orders", "list", "--limit", "0"]).is_err());
        assert!(parse(&["orders", "list", "--limit", "101"]).is_err());
        assert!(parse(&["orders", "list", "--limit", "100", "--all"]).is_ok());
    }

    #[test]
    fn help_documents_exit_codes_and_examples() {
        let help = Cli::command().render_long_help().to_string();
        for code in [exit::OK, exit::REFUSED, exit::USAGE, exit::UNAVAILABLE, exit::NOT_FOUND] {
            assert!(help.contains(&format!("\n  {code}  ")), "exit code {code} undocumented");
        }
        assert!(help.contains("ORDERFLOW_CLIENT_SECRET"));
        assert!(help.contains("Examples:"));
    }
}
