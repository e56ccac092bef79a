//! `[access_log]`: one line per request, off by default.

use std::path::Path;

use super::reader::Reader;
use super::{AccessLogConfig, AccessLogFormat, LogOutput};

impl Reader<'_> {
    pub(super) fn access_log(&mut self, data_dir: &Path) -> AccessLogConfig {
        let mut section = self.section("access_log");
        let format = match self.string(&mut section, "format", "off").as_str() {
            "off" => None,
            "text" => Some(AccessLogFormat::Text),
            "json" => Some(AccessLogFormat::Json),
            other => {
                self.problem(
                    "access_log",
                    "format",
                    &format!("expected \"off\", \"text\" or \"json\", found \"{other}\""),
                );
                None
            }
        };
        let output = match self.string(&mut section, "path", "-").as_str() {
            "" => {
                self.problem(
                    "access_log",
                    "path",
                    "is empty: name a file, \"-\" (stdout) or \"stderr\"",
                );
                None
            }
            "-" | "stdout" => Some(LogOutput::Stdout),
            "stderr" => Some(LogOutput::Stderr),
            file => Some(LogOutput::File(data_dir.join(file))),
        };
        let config = AccessLogConfig {
            format,
            output,
            query: self.boolean(&mut section, "query", false),
            buffer: self.positive_count(&mut section, "buffer", AccessLogConfig::DEFAULT_BUFFER),
        };
        self.finish(&section);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn off_by_default_and_every_key_read() {
        let config = Config::from_toml("t", "", &Overrides::default()).unwrap();
        assert!(config.access_log.format.is_none());
        let text = "[server]\ndata_dir = \"/d\"\n[access_log]\nformat = \"json\"\npath = \"access.log\"\nquery = true\nbuffer = 5\n";
        let config = Config::from_toml("t", text, &Overrides::default()).unwrap();
        let log = &config.access_log;
        assert_eq!(log.format, Some(AccessLogFormat::Json));
        assert_eq!(log.output, Some(LogOutput::File("/d/access.log".into())));
        assert!(log.query);
        assert_eq!(log.buffer, 5);
        let error = Config::from_toml(
            "t",
            "[access_log]\nformat = \"combined\"\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.problems[0].contains("[access_log] format"), "{error}");
    }
}
