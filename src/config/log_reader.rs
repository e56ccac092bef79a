//! The `[log]` and `[audit]` keys: what the gateway writes down. The level is checked here, word
//! by word: the filter syntax takes any word it does not know as a module name, so
//! `level = "warning"` would otherwise be accepted and silence every line.

use std::path::Path;

use super::reader::{Reader, Section};
use super::{AuditConfig, LogConfig, LogFormat, LogOutput};

impl Reader<'_> {
    pub(super) fn log(&mut self, log: &mut Section) -> LogConfig {
        let level = self.string(log, "level", LogConfig::DEFAULT_LEVEL);
        if let Err(why) = check_filter(&level) {
            self.problem("log", "level", &why);
        }
        let level = normalize(&level);
        let format = match self.string(log, "format", "text").as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "log",
                    "format",
                    &format!("expected \"text\" or \"json\", found \"{other}\""),
                );
                LogFormat::Text
            }
        };
        LogConfig { level, format }
    }

    /// `path` is relative to `data_dir` unless absolute; `-` and `stdout`, `stderr` name the
    /// process's streams.
    pub(super) fn audit(&mut self, audit: &mut Section, data_dir: &Path) -> AuditConfig {
        let enabled = self.boolean(audit, "enabled", true);
        let path = self.string(audit, "path", AuditConfig::DEFAULT_PATH);
        let output = match path.as_str() {
            "" => {
                self.problem(
                    "audit",
                    "path",
                    "is empty: name a file, \"-\" (stdout) or \"stderr\", or set enabled = false",
                );
                None
            }
            "-" | "stdout" => Some(LogOutput::Stdout),
            "stderr" => Some(LogOutput::Stderr),
            file => Some(LogOutput::File(data_dir.join(file))),
        };
        AuditConfig {
            output: output.filter(|_| enabled),
            authentication_success: self.boolean(audit, "authentication_success", false),
            buffer: self.positive_count(audit, "buffer", AuditConfig::DEFAULT_BUFFER),
        }
    }
}

/// Accepts a comma-separated list of `LEVEL` and `module=LEVEL` directives whose levels are
/// among [`LogConfig::LEVELS`] (any case); the error names what is wrong and what would do.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let valid = LogConfig::LEVELS.join(", ");
    let usage =
        format!("use one of {valid}, alone or per module as in \"tokengate=debug,hyper=warn\"");
    if normalize(filter).is_empty() {
        return Err(format!("is empty: {usage}"));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (module, level) = match directive.split_once('=') {
            Some((module, level)) => (Some(module.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(module) = module {
            let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-');
            if module.is_empty() || !module.chars().all(name_char) {
                return Err(format!(
                    "\"{directive}\" does not name a module before `=`: {usage}"
                ));
            }
        }
        if !is_level(level) {
            let hint = suggestion(level)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(format!("\"{level}\" is not a log level{hint}: {usage}"));
        }
    }
    // Whatever passed the check above must also be what the subscriber accepts.
    tracing_subscriber::EnvFilter::try_new(normalize(filter))
        .map(drop)
        .map_err(|e| format!("\"{filter}\": {e}: {usage}"))
}

/// The filter without the spaces and empty directives the subscriber would stumble on.
fn normalize(filter: &str) -> String {
    let directives: Vec<String> = filter
        .split(',')
        .map(|d| d.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .filter(|d| !d.is_empty())
        .collect();
    directives.join(",")
}

fn is_level(word: &str) -> bool {
    LogConfig::LEVELS
        .iter()
        .any(|level| level.eq_ignore_ascii_case(word))
}

/// The level meant by a name other logging systems use.
fn suggestion(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    Some(match word.as_str() {
        "warning" | "warnings" | "wrn" => "warn",
        "err" | "errors" | "fatal" | "critical" | "crit" | "severe" | "emerg" | "alert" => "error",
        "information" | "informational" | "notice" | "inf" => "info",
        "verbose" | "dbg" | "fine" => "debug",
        "all" | "finest" | "trc" => "trace",
        "none" | "quiet" | "silent" | "false" => "off",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::check_filter;
    use crate::config::{AuditConfig, Config, LogFormat, LogOutput, Overrides};

    fn problems(text: &str) -> String {
        Config::from_toml("gw.toml", text, &Overrides::default())
            .unwrap_err()
            .problems
            .join("\n")
    }

    #[test]
    fn levels_and_per_module_directives_pass() {
        for good in [
            "info",
            "WARN",
            "off",
            "tokengate=debug,hyper=warn",
            "warn, tokengate::auth=trace",
            "error,rustls=off",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused_with_the_list_and_a_hint() {
        let all = problems("[log]\nlevel = \"warning\"\n");
        assert!(
            all.starts_with(
                "gw.toml: [log] level: \"warning\" is not a log level (did you mean \"warn\"?)"
            ),
            "{all}"
        );
        assert!(
            all.contains("error, warn, info, debug, trace, off"),
            "{all}"
        );
        for bad in ["verbose", "tokengate=loud", "=debug", "a b=info", "", " , "] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
        assert!(check_filter("tokengate=loud")
            .unwrap_err()
            .starts_with("\"loud\" is not a log level:"));
    }

    #[test]
    fn the_audit_log_is_on_by_default_in_the_data_dir() {
        let overrides = Overrides {
            data_dir: Some("/var/lib/gw".into()),
            ..Overrides::default()
        };
        let audit = |text: &str| Config::from_toml("t", text, &overrides).unwrap().audit;
        let default = audit("");
        assert_eq!(
            default.output,
            Some(LogOutput::File("/var/lib/gw/audit.json".into()))
        );
        assert!(!default.authentication_success);
        assert_eq!(default.buffer, AuditConfig::DEFAULT_BUFFER);
        assert_eq!(
            audit("[audit]\npath = \"-\"\n").output,
            Some(LogOutput::Stdout)
        );
        assert_eq!(
            audit("[audit]\npath = \"/log/a.json\"\n").output,
            Some(LogOutput::File("/log/a.json".into()))
        );
        assert_eq!(audit("[audit]\nenabled = false\n").output, None);
        let all = problems("[audit]\nbuffer = 0\npath = \"\"\ncolour = 1\n");
        for key in ["[audit] buffer", "[audit] path", "[audit] colour"] {
            assert!(all.contains(key), "{key} not in {all}");
        }
    }

    #[test]
    fn format_is_text_or_json() {
        let config = Config::from_toml("t", "[log]\nformat = \"json\"\n", &Overrides::default());
        assert_eq!(config.unwrap().log.format, LogFormat::Json);
        let config = Config::from_toml("t", "", &Overrides::default()).unwrap();
        assert_eq!(config.log.format, LogFormat::Text);
        assert!(problems("[log]\nformat = \"xml\"\n")
            .contains("[log] format: expected \"text\" or \"json\""));
    }
}
