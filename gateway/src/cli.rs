//! Command line: `serve` (the default), `migrate`, `token`, `check`, `import`.

use crate::config::Config;
use crate::error::GatewayError;
use crate::{secrets, server};
use chat_core::auth::AgentTokens;
use chat_storage::StoreConfig;
use clap::{Parser, Subcommand};
use std::time::Duration;

/// The live-chat gateway. Configuration comes from `CHAT_*` environment variables (see README).
#[derive(Debug, Parser)]
#[command(name = "chat-gateway", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve {
        /// Take over the listening sockets of a running gateway (zero-downtime upgrade): start
        /// the new binary with `serve --upgrade`, then send SIGQUIT to the old process. Both
        /// must use the same `CHAT_UPGRADE_SOCK`.
        #[arg(long)]
        upgrade: bool,
    },
    /// Apply pending database migrations to `CHAT_DATABASE_URL` and exit.
    Migrate,
    /// Print an agent JWT signed with the gateway's secret, for development.
    Token {
        /// Agent id (the `sub` claim).
        #[arg(long)]
        agent: String,
        /// Display name (the `name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in minutes.
        #[arg(long, default_value_t = 15)]
        ttl_minutes: u64,
        /// The sites the agent works for (the `sites` claim), comma-separated, or `*` for every
        /// site; without it the token names none and `CHAT_DEFAULT_AGENT_SITES` applies.
        #[arg(long)]
        sites: Option<String>,
    },
    /// Check the configuration and environment (store, secret, origins, upstream, ports) and
    /// print each finding with its fix; exit 1 when one is an error (see `crate::check`).
    Check {
        /// A sample agent token from the main site, to see whether it verifies and why not;
        /// `-` reads it from stdin (keeps it out of `ps` and the shell history).
        #[arg(long)]
        token: Option<String>,
        /// Longest wait for each network probe (store, upstream), in seconds.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Load a chat history exported from the old chat server (JSON lines, see docs/import.md)
    /// into the store, migrating it first. Running it again with the same file adds nothing.
    Import {
        /// The export file, or `-` for standard input.
        file: String,
        /// Report bad lines on stderr and go on, instead of stopping at the first one.
        #[arg(long)]
        skip_bad: bool,
        /// Lines committed per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
    },
}

/// Logs go to stderr; `CHAT_LOG` sets the filter per module (`info` by default, e.g.
/// `info,chat_gateway=debug`) and `CHAT_LOG_FORMAT=json` writes one JSON object per line instead
/// of text.
pub fn init_logging() {
    use crate::settings::{LOG, LOG_FORMAT};
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG.name)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG.default_value()));
    let json = std::env::var(LOG_FORMAT.name)
        .is_ok_and(|format| format.trim().eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        // Colours only on a terminal: journald and log files get plain text operators can grep.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// Runs the chosen command.
pub fn run(cli: Cli, config: Config) -> Result<(), GatewayError> {
    match cli.command.unwrap_or(Command::Serve { upgrade: false }) {
        Command::Serve { upgrade } => server::serve(config, upgrade),
        Command::Migrate => migrate(&config),
        Command::Token {
            agent,
            name,
            ttl_minutes,
            sites,
        } => {
            let secrets = secrets::load(&config)?;
            let name = name.unwrap_or_else(|| agent.clone());
            let sites = sites
                .map(|list| {
                    chat_core::model::Sites::parse(&list)
                        .map(|sites| sites.to_claim())
                        .map_err(|why| GatewayError::Other(format!("--sites: {why}")))
                })
                .transpose()?;
            let token = AgentTokens::with_rules(&secrets.admin_jwt, &config.agent_token_rules)
                .mint_for_sites(
                    &agent,
                    &name,
                    sites.as_deref(),
                    Duration::from_secs(ttl_minutes * 60),
                )
                .map_err(|e| GatewayError::Other(e.to_string()))?;
            println!("{token}");
            Ok(())
        }
        Command::Check {
            token,
            timeout_secs,
        } => check(&config, token, timeout_secs),
        Command::Import {
            file,
            skip_bad,
            batch,
        } => crate::import::run(
            &config,
            &crate::import::ImportOptions {
                source: file,
                skip_bad,
                batch_lines: batch as usize,
            },
        )
        .map(|_| ()),
    }
}

/// `chat-gateway check`: the findings on stdout, one per line, then a summary; an error when
/// any finding is one (exit status 1).
fn check(config: &Config, token: Option<String>, timeout_secs: u64) -> Result<(), GatewayError> {
    use crate::check::{Context, Severity};
    let token = match token.as_deref() {
        Some("-") => {
            let mut line = String::new();
            // A JWT is a few hundred bytes; a bounded read keeps a wrong pipe from eating memory.
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), 64 * 1024),
                &mut line,
            )?;
            Some(line.trim().to_string())
        }
        other => other.map(str::to_string),
    };
    let var = |name: &str| std::env::var(name).ok();
    let report = crate::check::run(&Context {
        config,
        token: token.as_deref(),
        timeout: Duration::from_secs(timeout_secs.max(1)),
        var: &var,
    });
    for finding in &report.findings {
        println!("{finding}");
    }
    let (errors, warnings) = (report.count(Severity::Error), report.count(Severity::Warn));
    println!(
        "CHECK {} errors={errors} warnings={warnings}",
        if errors == 0 { "OK" } else { "FAILED" }
    );
    if errors > 0 {
        return Err(GatewayError::Other(format!(
            "check found {errors} error(s): chat would break (the lines starting with `error`)"
        )));
    }
    Ok(())
}

fn migrate(config: &Config) -> Result<(), GatewayError> {
    let store = config.store_config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(chat_storage::migrate(&store))?;
    let applied: Vec<String> = report
        .applied
        .iter()
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect();
    println!(
        "MIGRATE_OK store={} version={} applied=[{}]",
        match store {
            StoreConfig::Postgres { .. } => "postgres",
            StoreConfig::Embedded { .. } => "embedded",
        },
        report.version,
        applied.join(", ")
    );
    Ok(())
}
