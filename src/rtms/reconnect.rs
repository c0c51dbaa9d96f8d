//! The reconnection policy: given how a connection attempt ended and what
//! came before, whether to connect again (after how long, to which URL) or
//! to stop with an outcome.
//!
//! Pure decisions on values (the clock is an argument): no IO, no sleeping.
//! The session carries the steps out. The rules follow Zoom's (`docs/rtms-protocol.md`
//! §17): a lost connection is retried with growing delays for as long as
//! Zoom waits for us (60 s from the first loss); a loss after media flowed
//! again starts a fresh window; a refusal as a duplicate signaling
//! connection is retried a few times while Zoom forgets our old socket; a
//! media socket alone is reopened a few times before everything is redone.

use std::time::Duration;

use tokio::time::Instant;

use super::Outcome;
use super::protocol::{self, status};

/// How long after losing the connection we keep trying (Zoom waits ~60 s).
pub const SIGNALING_WINDOW: Duration = Duration::from_secs(60);
/// First delay after a lost connection; doubles per attempt.
pub const LOST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retries of a handshake refused as a duplicate signaling connection.
pub const DUPLICATE_RETRIES: u32 = 3;
/// First delay after such a refusal; doubles per attempt.
pub const DUPLICATE_BACKOFF: Duration = Duration::from_millis(1500);
/// Attempts to reopen a lost media socket while signaling stays up.
pub const MEDIA_RETRIES: u32 = 3;
/// First delay before reopening a media socket; doubles per attempt.
pub const MEDIA_BACKOFF: Duration = Duration::from_millis(250);

/// Why one connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The stream is over (TERMINATED).
    Terminated { reason: i64 },
    /// Asked to stop (stopped webhook, engagement ended, shutdown).
    Cancelled,
    /// Connection lost or refused transiently: try again.
    Lost(String),
    /// Refused for good (bad signature, unknown stream, …), unless the code
    /// says the refusal is transient.
    Refused { code: i64, reason: String },
    /// Zoom re-sent the start (fail-over): connect again to this URL.
    Restart(String),
}

/// What the session does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Connect again after `after`.
    Retry {
        after: Duration,
        /// The URL to use from now on, when it changed.
        url: Option<String>,
        /// A status line for the people watching, when one is due.
        notice: Option<String>,
        /// Counts as a reconnection (engine counter, "reconnecting" view).
        reconnect: bool,
    },
    /// The session is over.
    Stop(Outcome),
}

/// The state the policy keeps between attempts.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// When the current run of failures began.
    lost_since: Option<Instant>,
    /// Attempts in the current run.
    attempt: u32,
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decide after an attempt ended. `streamed`: the attempt reached
    /// streaming (media flowed), which ends any earlier run of failures.
    pub fn decide(&mut self, ended: Ended, streamed: bool, now: Instant) -> Step {
        if streamed {
            *self = Self::default();
        }
        match ended {
            Ended::Terminated { reason } => Step::Stop(Outcome::Terminated { reason }),
            Ended::Cancelled => Step::Stop(Outcome::Stopped),
            Ended::Restart(url) => {
                *self = Self::default();
                Step::Retry {
                    after: Duration::ZERO,
                    url: Some(url),
                    notice: Some("RTMS server changed, reconnecting".into()),
                    reconnect: false,
                }
            }
            Ended::Refused { code, .. }
                if code == status::DUPLICATE_SIGNAL_REQUEST && self.attempt < DUPLICATE_RETRIES =>
            {
                self.attempt += 1;
                Step::Retry {
                    after: DUPLICATE_BACKOFF * 2u32.pow(self.attempt - 1),
                    url: None,
                    notice: None,
                    reconnect: false,
                }
            }
            Ended::Refused { code, reason } => {
                let detail = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                Step::Stop(Outcome::Failed(format!(
                    "RTMS handshake refused: {} ({code}){detail}",
                    protocol::status_name(code)
                )))
            }
            Ended::Lost(why) => {
                let since = *self.lost_since.get_or_insert(now);
                if now.duration_since(since) >= SIGNALING_WINDOW {
                    return Step::Stop(Outcome::Failed(format!("RTMS connection lost: {why}")));
                }
                let notice = (self.attempt == 0)
                    .then(|| format!("RTMS connection lost ({why}), reconnecting"));
                let after = (LOST_BACKOFF * 2u32.pow(self.attempt.min(6))).min(MAX_BACKOFF);
                self.attempt += 1;
                Step::Retry {
                    after,
                    url: None,
                    notice,
                    reconnect: true,
                }
            }
        }
    }
}

/// The delay before the `attempt`th (from 0) try to reopen a lost media
/// socket, or `None` when it is time to redo the whole connection.
pub fn media_retry(attempt: u32) -> Option<Duration> {
    (attempt < MEDIA_RETRIES).then(|| MEDIA_BACKOFF * 2u32.pow(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Ended {
        Ended::Lost("gone".into())
    }

    fn delay(step: &Step) -> Duration {
        match step {
            Step::Retry { after, .. } => *after,
            Step::Stop(o) => panic!("stopped: {o:?}"),
        }
    }

    #[test]
    fn lost_connections_back_off_and_give_up_after_the_window() {
        let mut p = Policy::new();
        let t0 = Instant::now();
        let first = p.decide(lost(), false, t0);
        assert!(
            matches!(&first, Step::Retry { notice: Some(n), reconnect: true, .. } if n.contains("gone"))
        );
        assert_eq!(delay(&first), LOST_BACKOFF);
        let second = p.decide(lost(), false, t0 + Duration::from_secs(5));
        assert!(matches!(&second, Step::Retry { notice: None, .. }));
        assert_eq!(delay(&second), LOST_BACKOFF * 2);
        // Delays are capped.
        for i in 0..5 {
            p.decide(lost(), false, t0 + Duration::from_secs(10 + i));
        }
        assert_eq!(
            delay(&p.decide(lost(), false, t0 + Duration::from_secs(20))),
            MAX_BACKOFF
        );
        // Still inside the window a second before its end.
        assert!(matches!(
            p.decide(
                lost(),
                false,
                t0 + SIGNALING_WINDOW - Duration::from_secs(1)
            ),
            Step::Retry { .. }
        ));
        assert_eq!(
            p.decide(lost(), false, t0 + SIGNALING_WINDOW),
            Step::Stop(Outcome::Failed("RTMS connection lost: gone".into()))
        );
    }

    #[test]
    fn streaming_again_starts_a_fresh_window() {
        let mut p = Policy::new();
        let t0 = Instant::now();
        p.decide(lost(), false, t0);
        p.decide(lost(), false, t0 + Duration::from_secs(50));
        // The attempt at 59 s streamed, then was lost again: new window.
        let step = p.decide(lost(), true, t0 + Duration::from_secs(59));
        assert_eq!(delay(&step), LOST_BACKOFF);
        assert!(matches!(
            step,
            Step::Retry {
                notice: Some(_),
                ..
            }
        ));
        assert!(matches!(
            p.decide(lost(), false, t0 + Duration::from_secs(100)),
            Step::Retry { .. }
        ));
        assert!(matches!(
            p.decide(lost(), false, t0 + Duration::from_secs(119)),
            Step::Stop(_)
        ));
    }

    #[test]
    fn duplicate_signaling_is_retried_three_times_then_fails() {
        let mut p = Policy::new();
        let now = Instant::now();
        let dup = || Ended::Refused {
            code: status::DUPLICATE_SIGNAL_REQUEST,
            reason: "dup".into(),
        };
        let delays: Vec<Duration> = (0..3)
            .map(|_| delay(&p.decide(dup(), false, now)))
            .collect();
        assert_eq!(
            delays,
            [
                DUPLICATE_BACKOFF,
                DUPLICATE_BACKOFF * 2,
                DUPLICATE_BACKOFF * 4
            ]
        );
        assert_eq!(
            p.decide(dup(), false, now),
            Step::Stop(Outcome::Failed(
                "RTMS handshake refused: DUPLICATE_SIGNAL_REQUEST (8): dup".into()
            ))
        );
    }

    #[test]
    fn other_refusals_termination_and_cancel_stop_at_once() {
        let mut p = Policy::new();
        let now = Instant::now();
        assert_eq!(
            p.decide(
                Ended::Refused {
                    code: status::INVALID_SIGNATURE,
                    reason: String::new()
                },
                false,
                now
            ),
            Step::Stop(Outcome::Failed(
                "RTMS handshake refused: INVALID_SIGNATURE (3)".into()
            ))
        );
        assert_eq!(
            p.decide(Ended::Terminated { reason: 21 }, true, now),
            Step::Stop(Outcome::Terminated { reason: 21 })
        );
        assert_eq!(
            p.decide(Ended::Cancelled, false, now),
            Step::Stop(Outcome::Stopped)
        );
    }

    #[test]
    fn a_restart_goes_to_the_new_url_at_once_and_resets_the_run() {
        let mut p = Policy::new();
        let t0 = Instant::now();
        p.decide(lost(), false, t0);
        p.decide(lost(), false, t0 + Duration::from_secs(1));
        let step = p.decide(
            Ended::Restart("wss://b".into()),
            false,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(
            step,
            Step::Retry {
                after: Duration::ZERO,
                url: Some("wss://b".into()),
                notice: Some("RTMS server changed, reconnecting".into()),
                reconnect: false
            }
        );
        assert_eq!(
            delay(&p.decide(lost(), false, t0 + Duration::from_secs(70))),
            LOST_BACKOFF
        );
    }

    #[test]
    fn a_media_socket_is_reopened_three_times() {
        let delays: Vec<Option<Duration>> = (0..4).map(media_retry).collect();
        assert_eq!(
            delays,
            [
                Some(MEDIA_BACKOFF),
                Some(MEDIA_BACKOFF * 2),
                Some(MEDIA_BACKOFF * 4),
                None
            ]
        );
    }
}
