//! Runs the `git` CLI for nightshift: an absolute binary path, stdin from /dev/null,
//! `LC_ALL=C`, and an allow-listed environment so a `GIT_DIR`/`GIT_INDEX_FILE` leaking in from a
//! hook or wrapper can never redirect us at the user's index. Owns no policy: callers decide
//! what to run; this module only makes running it safe and its failures readable.
