//! The one error type of this crate: where, which option, what was expected.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub plugin: Option<String>,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub option: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            plugin: None,
            file: file.into(),
            line: None,
            column: None,
            option: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, (line, column): (usize, usize)) -> ConfigError {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub(crate) fn option(mut self, option: impl Into<String>) -> ConfigError {
        self.option = Some(option.into());
        self
    }

    pub(crate) fn plugin(mut self, plugin: impl Into<String>) -> ConfigError {
        self.plugin = Some(plugin.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.plugin {
            write!(f, "plugin `{p}`: ")?;
        }
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(o) = &self.option {
            write!(f, "option `{o}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}
