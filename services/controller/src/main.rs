//! `orderflow-controller`: the OrderPipeline controller.
//!
//! ```text
//! orderflow-controller crd                              # print the CRD YAML
//! orderflow-controller [run]                            # the in-cluster controller
//! orderflow-controller reconcile-once --file F [--state S] [--env-dir D]
//!                                                       # one reconcile, no cluster
//! orderflow-controller delete-pipeline NAME [--namespace NS] [--timeout-seconds N]
//!                                                       # delete and wait (helm's pre-delete hook)
//! ```

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use orderflow_controller::{delete_pipeline, once, run};

#[derive(Parser)]
#[command(
    name = "orderflow-controller",
    version,
    about = "Makes SQS queues and PostgreSQL databases match OrderPipeline resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the OrderPipeline CustomResourceDefinition (YAML).
    Crd,
    /// Run the controller in a cluster (the default).
    Run,
    /// Reconcile the OrderPipeline in a file once, without a cluster, and print
    /// the ConfigMap and Secrets it would publish (stdout) and a status summary (stderr).
    ReconcileOnce {
        /// Multi-document YAML with one OrderPipeline and the Secrets it refers to.
        #[arg(long)]
        file: PathBuf,
        /// Where the generated passwords are kept between runs (default: .<file name>.state beside the file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Also write each published object as KEY='value' lines to <DIR>/<name>.env.
        #[arg(long, value_name = "DIR")]
        env_dir: Option<PathBuf>,
    },
    /// Delete an OrderPipeline and wait until the controller has removed its finalizer
    /// (exit 0: deleted or already gone; 3: still there at the timeout; 1: API error).
    DeletePipeline {
        /// The OrderPipeline's name.
        name: String,
        /// Its namespace (default: the pod's, or the kubeconfig's).
        #[arg(long)]
        namespace: Option<String>,
        /// How long to wait for the finalizer to go.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => print!("{}", orderflow_controller::crd_yaml()),
        Command::ReconcileOnce { file, state, env_dir } => {
            match once::run(&once::Args { file, state, env_dir }).await {
                Ok(report) => {
                    eprint!("{}", report.summary);
                    print!("{}", report.yaml);
                }
                Err(e) => {
                    eprintln!("orderflow-controller reconcile-once: {e}");
                    std::process::exit(e.exit_code());
                }
            }
        }
        Command::DeletePipeline { name, namespace, timeout_seconds } => {
            let args = delete_pipeline::Args {
                name,
                namespace,
                timeout: Duration::from_secs(timeout_seconds),
                poll: Duration::from_secs(2),
            };
            std::process::exit(delete_pipeline::main(&args).await);
        }
        Command::Run => {
            let telemetry = telemetry::init(
                "orderflow-controller",
                telemetry::LogFormat::from_env(),
                "info,kube=warn,sqlx=warn,aws_config=warn",
            );
            let settings =
                settings::or_exit(run::RunSettings::from_env(settings::Env::from_process()), "orderflow-controller");
            let result = run::run(settings, shutdown::on_signal()).await;
            telemetry.shutdown();
            if let Err(e) = result {
                eprintln!("orderflow-controller: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
