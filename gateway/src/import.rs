//! `chat-gateway import <file|->`: loads a chat history exported from the old chat server as
//! JSON lines (`docs/import.md`) into the store, streaming the file one bounded line at a time
//! and committing a batch of lines per transaction. Running it again with the same file writes
//! nothing new: message ids dedupe, conversations and visitors are keyed by their old ids.

pub mod line;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::model::ConversationId;
use chat_core::store::{Imported, ImportedMessage, Store};

use crate::config::Config;
use crate::error::GatewayError;
use line::{read_line, Read, MAX_LINE_BYTES};

/// Most bytes of message text in one batch: a transaction stays small whatever the lines hold.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How often the progress line is printed, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The file, or `-` for standard input.
    pub source: String,
    /// Skip bad lines (reported on stderr with their number) instead of stopping at the first.
    pub skip_bad: bool,
    /// Lines per transaction.
    pub batch_lines: usize,
}

/// What a run did, for the progress and `IMPORT_OK` lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Messages written by this run.
    pub messages_new: u64,
    /// Messages already in the store (an earlier run wrote them).
    pub messages_existing: u64,
    /// Distinct conversations the file's messages belong to.
    pub conversations: u64,
    /// Of those, conversations this run created.
    pub conversations_new: u64,
    /// Bad lines skipped (`--skip-bad`).
    pub skipped: u64,
}

impl ImportSummary {
    /// The line printed to stdout at the end of a successful run.
    pub fn ok_line(&self) -> String {
        format!(
            "IMPORT_OK lines={} messages_new={} messages_existing={} conversations={} \
             conversations_new={} skipped={}",
            self.lines,
            self.messages_new,
            self.messages_existing,
            self.conversations,
            self.conversations_new,
            self.skipped
        )
    }

    fn progress_line(&self) -> String {
        let mut line = format!(
            "import: {} lines, {} messages new, {} already present, {} conversations",
            self.lines, self.messages_new, self.messages_existing, self.conversations
        );
        if self.skipped > 0 {
            line.push_str(&format!(", {} bad lines skipped", self.skipped));
        }
        line
    }
}

/// Runs the import against the configured store (migrating it first, as `migrate` does) and
/// prints progress to stderr and `IMPORT_OK …` to stdout.
pub fn run(config: &Config, options: &ImportOptions) -> Result<ImportSummary, GatewayError> {
    let input: Box<dyn std::io::Read> = if options.source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let path = PathBuf::from(&options.source);
        Box::new(
            std::fs::File::open(&path)
                .map_err(|e| GatewayError::Other(format!("cannot open {}: {e}", path.display())))?,
        )
    };
    let store_config = config.store_config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        chat_storage::migrate(&store_config).await?;
        let store = chat_storage::open(&store_config).await?;
        let mut importer = Importer::new(store, options, config.max_message_chars);
        let result = importer.read_all(BufReader::new(input)).await;
        eprintln!("{}", importer.summary.progress_line());
        result.map(|()| importer.summary)
    })?;
    println!("{}", summary.ok_line());
    Ok(summary)
}

struct Importer<'a> {
    store: Arc<dyn Store>,
    options: &'a ImportOptions,
    max_body_chars: usize,
    summary: ImportSummary,
    conversations: HashSet<ConversationId>,
    /// Parsed messages waiting for the next transaction, with their line numbers.
    batch: Vec<(u64, ImportedMessage)>,
    batch_bytes: usize,
    last_progress: Instant,
}

impl<'a> Importer<'a> {
    fn new(store: Arc<dyn Store>, options: &'a ImportOptions, max_body_chars: usize) -> Self {
        Self {
            store,
            options,
            max_body_chars,
            summary: ImportSummary::default(),
            conversations: HashSet::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            last_progress: Instant::now(),
        }
    }

    async fn read_all(&mut self, mut reader: impl BufRead) -> Result<(), GatewayError> {
        let mut buf = Vec::new();
        loop {
            let read = read_line(&mut reader, &mut buf, MAX_LINE_BYTES)
                .map_err(|e| GatewayError::Other(format!("reading the import file: {e}")))?;
            if read == Read::End {
                break;
            }
            self.summary.lines += 1;
            let number = self.summary.lines;
            let parsed = match read {
                Read::TooLong => Err(format!("longer than {MAX_LINE_BYTES} bytes")),
                _ => match std::str::from_utf8(&buf) {
                    Err(_) => Err("not UTF-8".to_string()),
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => line::parse(text.trim_end_matches('\r'), self.max_body_chars),
                },
            };
            match parsed {
                Ok(message) => {
                    self.batch_bytes += message.body.len();
                    self.batch.push((number, message));
                    if self.batch.len() >= self.options.batch_lines
                        || self.batch_bytes >= MAX_BATCH_BYTES
                    {
                        self.flush().await?;
                    }
                }
                Err(why) => {
                    // Everything before a bad line is committed before deciding, so that
                    // stopping here means: all lines before it are in, none after it.
                    self.flush().await?;
                    self.bad_line(number, &why)?;
                }
            }
            if self.last_progress.elapsed() >= PROGRESS_EVERY {
                eprintln!("{}", self.summary.progress_line());
                self.last_progress = Instant::now();
            }
        }
        self.flush().await
    }

    fn bad_line(&mut self, number: u64, why: &str) -> Result<(), GatewayError> {
        if self.options.skip_bad {
            eprintln!("import: line {number} skipped: {why}");
            self.summary.skipped += 1;
            Ok(())
        } else {
            Err(GatewayError::Other(format!(
                "import stopped at line {number}: {why}. The lines before it are imported \
                 ({} messages new, {} already present); fix the line and run the same \
                 command again (what is imported stays, nothing is duplicated), or pass \
                 --skip-bad",
                self.summary.messages_new, self.summary.messages_existing
            )))
        }
    }

    /// Commits the waiting messages, in file order; a message the store refuses is a bad line.
    async fn flush(&mut self) -> Result<(), GatewayError> {
        let mut pending = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        while !pending.is_empty() {
            let messages: Vec<ImportedMessage> = pending.iter().map(|(_, m)| m.clone()).collect();
            let outcomes = self
                .store
                .import_messages(&messages)
                .await
                .map_err(|e| GatewayError::Other(format!("import failed: {e}")))?;
            let done = outcomes.len();
            let mut refused = None;
            for ((number, message), outcome) in pending.iter().zip(outcomes) {
                match outcome {
                    Imported::Inserted {
                        conversation_created,
                        ..
                    } => {
                        self.summary.messages_new += 1;
                        if conversation_created {
                            self.summary.conversations_new += 1;
                        }
                    }
                    Imported::Existing(_) => self.summary.messages_existing += 1,
                    Imported::Refused(why) => {
                        refused = Some((*number, why));
                        continue;
                    }
                }
                if self.conversations.insert(message.conversation_id) {
                    self.summary.conversations += 1;
                }
            }
            pending.drain(..done.min(pending.len()));
            match refused {
                Some((number, why)) => self.bad_line(number, &why)?,
                None if done == 0 => break,
                None => {}
            }
        }
        Ok(())
    }
}
