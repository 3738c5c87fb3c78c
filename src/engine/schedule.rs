//! The load plan: which virtual user starts when, with which token. Every
//! load shape is a way of building one; the engine only starts users as the
//! schedule says. Today's shape is a fixed number of users whose first
//! requests are spread over the warm-up (at most a second), so thousands of
//! streams do not tick in lockstep; stages and shards extend this type, not
//! the engine.

use std::time::Duration;

use crate::scenario::LoadSpec;
use crate::tokens::UserToken;

/// One virtual user of the plan.
#[derive(Debug, Clone)]
pub struct UserStart {
    /// Its number, which also seeds its draws.
    pub vu: u32,
    /// When it starts, from the run's start.
    pub at: Duration,
    /// Its token (round-robin over the tokens file), if the scenario uses one.
    pub token: Option<UserToken>,
}

/// Who starts when.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Every user, in start order.
    pub users: Vec<UserStart>,
}

impl Schedule {
    /// A closed loop of `load.concurrency` users, started over the first
    /// second of the warm-up.
    pub fn closed(load: &LoadSpec, tokens: &[UserToken]) -> Self {
        let spread = load.warmup.min(Duration::from_secs(1));
        let n = load.concurrency.max(1);
        let users = (0..load.concurrency)
            .map(|vu| UserStart {
                vu,
                at: spread * vu / n,
                token: (!tokens.is_empty()).then(|| tokens[vu as usize % tokens.len()].clone()),
            })
            .collect();
        Schedule { users }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_users_spread_over_the_first_second_with_round_robin_tokens() {
        let load = LoadSpec {
            concurrency: 4,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::from_secs(5),
            think_time: Duration::ZERO,
            seed: 1,
            blocks: 10,
        };
        let tokens = crate::tokens::generated(3);
        let s = Schedule::closed(&load, &tokens);
        let at: Vec<u128> = s.users.iter().map(|u| u.at.as_millis()).collect();
        assert_eq!(at, [0, 250, 500, 750]);
        let ids: Vec<&str> = s
            .users
            .iter()
            .map(|u| u.token.as_ref().map_or("", |t| t.user_id.as_str()))
            .collect();
        assert_eq!(ids, ["demo-1", "demo-2", "demo-3", "demo-1"]);
        let none = Schedule::closed(
            &LoadSpec {
                warmup: Duration::ZERO,
                ..load
            },
            &[],
        );
        assert!(none
            .users
            .iter()
            .all(|u| u.at.is_zero() && u.token.is_none()));
    }
}
