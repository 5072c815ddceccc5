//! Model prices: USD per million tokens ([`Price`]) and the built-in table of list prices
//! that `pricing:` extends and overrides. Never reads usage from an agent: callers hand it in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// The cost of some usage at this price.
    #[must_use]
    pub fn cost(&self, u: &crate::agent::Usage) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "token counts are far below 2^52"
        )]
        let m = |n: u64, p: f64| n as f64 * p / 1_000_000.0;
        m(u.input, self.input)
            + m(u.output, self.output)
            + m(u.cache_read, self.cache_read)
            + m(u.cache_write, self.cache_write)
    }
}

/// List prices of current models (USD per million tokens) at the time of this release. Check
/// them against your provider and override or extend them with `pricing:`.
pub const DEFAULT_PRICES: [(&str, Price); 9] = [
    (
        "claude-opus-4-1",
        Price {
            input: 15.0,
            output: 75.0,
            cache_read: 1.5,
            cache_write: 18.75,
        },
    ),
    (
        "claude-opus-4-5",
        Price {
            input: 5.0,
            output: 25.0,
            cache_read: 0.5,
            cache_write: 6.25,
        },
    ),
    (
        "claude-sonnet-4-5",
        Price {
            input: 3.0,
            output: 15.0,
            cache_read: 0.3,
            cache_write: 3.75,
        },
    ),
    (
        "claude-haiku-4-5",
        Price {
            input: 1.0,
            output: 5.0,
            cache_read: 0.1,
            cache_write: 1.25,
        },
    ),
    (
        "gpt-5",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5-codex",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5.1",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5.1-codex",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5-mini",
        Price {
            input: 0.25,
            output: 2.0,
            cache_read: 0.025,
            cache_write: 0.0,
        },
    ),
];
