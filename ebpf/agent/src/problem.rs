//! What is wrong with a configuration, key by key: the validators (`config`, `nat64::config`)
//! collect every [`Problem`] so all are reported at once, and the crate's error lists them. It
//! imports nothing of the crate, so both can use it.

use std::{borrow::Cow, fmt};

/// One thing wrong with a configuration: its key (`section.key`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub section: &'static str,
    /// The key within `section` (`address`, `ports.tcp`, `pools[1].cidrs`: an entry of a list
    /// is named by its index).
    pub key: Cow<'static, str>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {}", self.section, self.key, self.message)
    }
}

/// The problems of one configuration section, collected so every one is reported at once.
#[derive(Debug)]
pub(crate) struct Problems {
    section: &'static str,
    list: Vec<Problem>,
}

impl Problems {
    pub fn new(section: &'static str) -> Self {
        Self {
            section,
            list: Vec::new(),
        }
    }

    pub fn add(&mut self, key: impl Into<Cow<'static, str>>, message: impl Into<String>) {
        self.list.push(Problem {
            section: self.section,
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}
