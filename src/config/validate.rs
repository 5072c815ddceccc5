//! Turns a [`RawConfig`] into a validated [`Config`]: every cross-key rule (a default worker
//! that exists, auth routes with exactly one secret source, a priced model under a USD cap)
//! and the defaults that depend on an agent's kind. Every error names the key at fault. Never
//! reads files or the environment.

use std::collections::BTreeMap;

use super::{
    Agent, AgentKind, Auth, AuthRoute, CONFIG_VERSION, Config, DEFAULT_ESTIMATE_TOKENS,
    DEFAULT_ESTIMATE_USD, DEFAULT_PRICES, Money, Price, RawAgent, RawAuth, RawConfig, RawTimeouts,
    Timeouts, parse_duration,
};

impl Config {
    /// Turns a raw config into a validated one.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn validate(raw: RawConfig) -> Result<Self, String> {
        if raw.version != CONFIG_VERSION {
            return Err(format!(
                "version {} is not supported (this nightshift reads version {CONFIG_VERSION})",
                raw.version
            ));
        }
        if raw.lanes == 0 {
            return Err("lanes must be at least 1".into());
        }
        let money = validate_money(&raw)?;
        let agents = validate_agents(raw.agents)?;
        let d = &raw.defaults;
        if !agents.contains_key(&d.worker) {
            return Err(format!("defaults.worker: no agent named `{}`", d.worker));
        }
        if let Some(v) = d.verifier.as_ref().filter(|v| !agents.contains_key(*v)) {
            return Err(format!("defaults.verifier: no agent named `{v}`"));
        }
        if d.max_attempts == 0 {
            return Err("defaults.max_attempts must be at least 1".into());
        }
        let timeouts = validate_timeouts(&d.timeouts)?;
        if let Some(p) = &d.panel {
            check_panel(&agents, &d.worker, p, "defaults.panel")?;
        }
        let panel_when = match (&d.panel_when, &d.panel) {
            (Some(_), None) => {
                return Err("defaults.panel_when: there is no `defaults.panel` to apply".into());
            }
            (Some(w), Some(_)) => {
                for (i, g) in w.paths.iter().enumerate() {
                    crate::glob::check(g)
                        .map_err(|e| format!("defaults.panel_when.paths[{i}]: {e}"))?;
                }
                w.paths.clone()
            }
            (None, _) => Vec::new(),
        };
        let b = &raw.budget;
        let max_wall_secs = match &b.max_wall_time {
            Some(s) => Some(parse_duration(s).map_err(|e| format!("budget.max_wall_time: {e}"))?),
            None => None,
        };
        let prices = validate_prices(&raw.pricing)?;
        check_priced(&agents, &money, &prices)?;
        let notify = match &raw.notify {
            Some(n) => Some(crate::notify::validate(n)?),
            None => None,
        };
        let confine_writable = raw
            .confine_writable
            .iter()
            .map(|p| absolute_dir("confine_writable", p))
            .collect::<Result<Vec<_>, _>>()?;
        let workspaces = match &raw.workspaces {
            Some(p) => Some(absolute_dir("workspaces", p)?),
            None => None,
        };
        if let Some(bad) = raw.redact.iter().find(|v| !is_var_name(v)) {
            return Err(format!(
                "redact: `{bad}` is not an environment variable name"
            ));
        }
        Ok(Self {
            panel: d.panel.clone(),
            panel_when,
            redact: raw.redact.clone(),
            notify,
            confine: raw.confine.unwrap_or_else(default_confine),
            confine_writable,
            workspaces,
            prompt_worker: raw.prompts.worker.clone(),
            prompt_verifier: raw.prompts.verifier.clone(),
            money,
            prices,
            lanes: raw.lanes,
            base: raw.base,
            integration_branch: raw.integration.branch,
            policy: raw.integration.policy,
            agents,
            default_worker: d.worker.clone(),
            default_verifier: d.verifier.clone(),
            max_attempts: d.max_attempts,
            timeouts,
            max_wall_secs,
            max_consecutive_failures: b.max_consecutive_failures.unwrap_or(5).max(1),
            max_attempts_per_stage: b.max_attempts_per_stage,
        })
    }
}

/// A panel's members are agents, distinct, of another family than `worker` (unless the panel
/// says `allow_same_family: true`), and its quorum is between 1 and the number of members.
/// `key` is where the panel is written (`defaults.panel`, or `panel` in a card).
///
/// # Errors
/// A message naming the key at fault, e.g. `defaults.panel.members[1]`.
pub fn check_panel(
    agents: &BTreeMap<String, Agent>,
    worker: &str,
    panel: &super::RawPanel,
    key: &str,
) -> Result<(), String> {
    if panel.members.is_empty() {
        return Err(format!("{key}.members: a panel needs at least one member"));
    }
    let family = agents.get(worker).map(|a| a.family.as_str());
    for (i, m) in panel.members.iter().enumerate() {
        let Some(a) = agents.get(m) else {
            return Err(format!("{key}.members[{i}]: no agent named `{m}`"));
        };
        if panel.members[..i].contains(m) {
            return Err(format!("{key}.members[{i}]: `{m}` is listed twice"));
        }
        if Some(a.family.as_str()) == family && !panel.allow_same_family {
            return Err(format!(
                "{key}.members[{i}]: `{m}` is of family `{}`, the worker `{worker}`'s own; a panel judges across families (set `allow_same_family: true` on the panel to override)",
                a.family
            ));
        }
    }
    let n = u32::try_from(panel.members.len()).unwrap_or(u32::MAX);
    if panel.quorum == 0 || panel.quorum > n {
        return Err(format!(
            "{key}.quorum: {} is not between 1 and the {n} members",
            panel.quorum
        ));
    }
    Ok(())
}

/// `strict` where this kernel can confine, else `detect` (and `doctor`/`status` say so).
fn default_confine() -> crate::config::ConfineMode {
    if crate::confine::support().is_supported() {
        crate::config::ConfineMode::Strict
    } else {
        crate::config::ConfineMode::Detect
    }
}

/// A directory from nightshift.yaml: absolute, or `~/…` under the home directory.
fn absolute_dir(key: &str, p: &str) -> Result<std::path::PathBuf, String> {
    if let Some(rest) = p.strip_prefix("~/") {
        let home = std::env::var_os("HOME").ok_or_else(|| format!("{key}: `{p}` needs $HOME"))?;
        return Ok(std::path::PathBuf::from(home).join(rest));
    }
    let path = std::path::PathBuf::from(p);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{key}: `{p}` must be absolute or start with `~/`"))
    }
}

fn is_var_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_timeouts(t: &RawTimeouts) -> Result<Timeouts, String> {
    let dur = |key: &str, v: &Option<String>, default: u64| match v {
        Some(s) => parse_duration(s).map_err(|e| format!("{key}: {e}")),
        None => Ok(default),
    };
    Ok(Timeouts {
        worker: dur("defaults.timeouts.worker", &t.worker, 45 * 60)?,
        verifier: dur("defaults.timeouts.verifier", &t.verifier, 20 * 60)?,
        acceptance: dur("defaults.timeouts.acceptance", &t.acceptance, 15 * 60)?,
    })
}

/// The built-in prices, extended and overridden by `pricing:`.
fn validate_prices(pricing: &BTreeMap<String, Price>) -> Result<BTreeMap<String, Price>, String> {
    let mut prices: BTreeMap<String, Price> = DEFAULT_PRICES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), *p))
        .collect();
    for (m, p) in pricing {
        if [p.input, p.output, p.cache_read, p.cache_write]
            .iter()
            .any(|v| !v.is_finite() || *v < 0.0)
        {
            return Err(format!(
                "pricing.{m}: prices are USD per million tokens, zero or more"
            ));
        }
        prices.insert(m.clone(), *p);
    }
    Ok(prices)
}

/// Under a USD cap, every agent of a paid kind needs a model with a price.
fn check_priced(
    agents: &BTreeMap<String, Agent>,
    money: &Money,
    prices: &BTreeMap<String, Price>,
) -> Result<(), String> {
    if money.max_usd.is_none() && money.host_max_usd.is_none() {
        return Ok(());
    }
    for a in agents.values().filter(|a| a.kind.vendor().is_paid()) {
        match &a.model {
            None => {
                return Err(format!(
                    "agents.{}.model: a USD cap is set, so every agent needs a model with a price (set `model:`)",
                    a.name
                ));
            }
            Some(m) if !prices.contains_key(m) => {
                return Err(format!(
                    "agents.{}.model: `{m}` has no price, and a USD cap is set; add it under `pricing:`",
                    a.name
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_agents(raw: BTreeMap<String, RawAgent>) -> Result<BTreeMap<String, Agent>, String> {
    if raw.is_empty() {
        return Err("agents: at least one agent is needed".into());
    }
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        if crate::ids::StageId::new(&name).is_err() {
            return Err(format!(
                "agents.{name}: agent names use a-z 0-9 . _ - and start with a letter or digit"
            ));
        }
        let family = a
            .family
            .clone()
            .or_else(|| a.kind.vendor().default_family().map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "agents.{name}.family: required for kind `{}`",
                    a.kind.vendor().name()
                )
            })?;
        if a.recipe.is_some() && !a.kind.vendor().takes_recipe() {
            return Err(format!(
                "agents.{name}.recipe: only the `script` kind takes a recipe"
            ));
        }
        for key in a.env.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(format!("agents.{name}.env: `{key}` is not a variable name"));
            }
        }
        let auth = validate_auth(&name, a.kind, a.auth.as_ref())?;
        let share_cli_state = a.share_cli_state.unwrap_or(auth == Auth::Subscription);
        let silence_secs = match &a.silence {
            Some(t) => Some(parse_duration(t).map_err(|e| format!("agents.{name}.silence: {e}"))?),
            None => None,
        };
        let agent = Agent {
            name: name.clone(),
            kind: a.kind,
            command: a.command,
            args: a.args,
            env: a.env,
            model: a.model,
            family,
            recipe: a.recipe,
            auth,
            share_cli_state,
            silence_secs,
        };
        agent.kind.vendor().check_agent(&agent)?;
        out.insert(name, agent);
    }
    Ok(out)
}

fn validate_money(raw: &RawConfig) -> Result<Money, String> {
    let b = &raw.budget;
    let usd = |key: &str, v: Option<f64>| match v {
        Some(x) if !x.is_finite() || x < 0.0 => {
            Err(format!("{key}: must be a number of dollars, zero or more"))
        }
        other => Ok(other),
    };
    let est = b.estimate.clone().unwrap_or_default();
    Ok(Money {
        max_tokens: b.max_tokens,
        max_usd: usd("budget.max_usd", b.max_usd)?,
        host_max_tokens: raw.host.max_tokens,
        host_max_usd: usd("host.max_usd", raw.host.max_usd)?,
        estimate_tokens: est.tokens.unwrap_or(DEFAULT_ESTIMATE_TOKENS),
        estimate_usd: usd("budget.estimate.usd", est.usd)?.unwrap_or(DEFAULT_ESTIMATE_USD),
    })
}

fn validate_auth(name: &str, kind: AgentKind, raw: Option<&RawAuth>) -> Result<Auth, String> {
    let Some(raw) = raw else {
        return Ok(Auth::Subscription);
    };
    let at = format!("agents.{name}.auth");
    match raw.route {
        AuthRoute::Subscription => {
            if raw.env.is_some() || raw.command.is_some() || raw.pass_as.is_some() {
                return Err(format!(
                    "{at}: route `subscription` uses the CLI's own login and takes no env, command or pass_as"
                ));
            }
            Ok(Auth::Subscription)
        }
        AuthRoute::Api => {
            let pass_as = raw
                .pass_as
                .clone()
                .or_else(|| kind.vendor().default_key_var().map(str::to_owned))
                .ok_or_else(|| format!("{at}.pass_as: required for kind `{}` (the variable the agent reads its key from)", kind.vendor().name()))?;
            match (&raw.env, &raw.command) {
                (Some(source), None) if !source.is_empty() => Ok(Auth::ApiEnv {
                    source: source.clone(),
                    pass_as,
                }),
                (None, Some(command)) if !command.trim().is_empty() => Ok(Auth::ApiCommand {
                    command: command.clone(),
                    pass_as,
                }),
                _ => Err(format!(
                    "{at}: route `api` needs exactly one of `env` (a variable holding the key) or `command` (prints the key)"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(yaml: &str) -> Result<Config, String> {
        let text = format!(
            "version: 1\nagents:\n  a: {yaml}\n  b: {{ kind: codex }}\ndefaults: {{ worker: a }}\n"
        );
        let raw: RawConfig = crate::schema::parse_yaml::<RawConfig>(&text, "nightshift.yaml")
            .map_err(|e| e.to_string())?;
        Config::validate(raw)
    }

    #[test]
    fn auth_routes() {
        let c = agent("{ kind: claude }").unwrap();
        assert_eq!(c.agents["a"].auth, Auth::Subscription);
        assert!(c.agents["a"].share_cli_state);
        let c = agent("{ kind: claude, auth: { route: api, env: MY_KEY } }").unwrap();
        assert_eq!(
            c.agents["a"].auth,
            Auth::ApiEnv {
                source: "MY_KEY".into(),
                pass_as: "ANTHROPIC_API_KEY".into()
            }
        );
        assert!(
            !c.agents["a"].share_cli_state,
            "an api route never shares the stored login"
        );
        let c =
            agent("{ kind: codex, auth: { route: api, command: \"pass show openai\" } }").unwrap();
        assert_eq!(
            c.agents["a"].auth,
            Auth::ApiCommand {
                command: "pass show openai".into(),
                pass_as: "OPENAI_API_KEY".into()
            }
        );
        for bad in [
            "{ kind: claude, auth: { route: api } }",
            "{ kind: claude, auth: { route: api, env: A, command: b } }",
            "{ kind: claude, auth: { route: subscription, env: A } }",
            "{ kind: command, command: x, family: f, auth: { route: api, env: A } }",
        ] {
            assert!(agent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aider_states_its_family_model_and_key_route() {
        let ok = "{ kind: aider, family: gpt, model: openai/gpt-4o, auth: { route: api, env: K, pass_as: OPENAI_API_KEY } }";
        let c = agent(ok).unwrap();
        assert_eq!(c.agents["a"].family, "gpt");
        assert!(!c.agents["a"].share_cli_state);
        for (bad, key) in [
            (
                "{ kind: aider, model: openai/gpt-4o, auth: { route: api, env: K, pass_as: OPENAI_API_KEY } }",
                "agents.a.family: required for kind `aider`",
            ),
            (
                "{ kind: aider, family: gpt, auth: { route: api, env: K, pass_as: OPENAI_API_KEY } }",
                "agents.a.model: required for kind `aider`",
            ),
            (
                "{ kind: aider, family: gpt, model: openai/gpt-4o }",
                "agents.a.auth: kind `aider` has no login of its own",
            ),
            (
                "{ kind: aider, family: gpt, model: openai/gpt-4o, auth: { route: api, env: K } }",
                "agents.a.auth.pass_as: required for kind `aider`",
            ),
        ] {
            let err = agent(bad).unwrap_err();
            assert!(err.starts_with(key), "{bad}: {err}");
        }
    }

    fn panel(defaults: &str) -> Result<Config, String> {
        let text = format!(
            "version: 1\nagents:\n  w: {{ kind: claude }}\n  c: {{ kind: codex }}\n  g: {{ kind: gemini }}\n  w2: {{ kind: claude }}\ndefaults: {{ worker: w, {defaults} }}\n"
        );
        let raw: RawConfig = crate::schema::parse_yaml::<RawConfig>(&text, "nightshift.yaml")
            .map_err(|e| e.to_string())?;
        Config::validate(raw)
    }

    #[test]
    fn panels_name_the_key_at_fault() {
        let ok = panel("panel: { members: [c, g], quorum: 2 }").unwrap();
        assert_eq!(ok.panel.map(|p| p.quorum), Some(2));
        for (bad, key) in [
            (
                "panel: { members: [c, w2], quorum: 1 }",
                "defaults.panel.members[1]: `w2` is of family `claude`",
            ),
            (
                "panel: { members: [c, x], quorum: 1 }",
                "defaults.panel.members[1]: no agent named `x`",
            ),
            (
                "panel: { members: [c, c], quorum: 1 }",
                "defaults.panel.members[1]: `c` is listed twice",
            ),
            (
                "panel: { members: [c, g], quorum: 3 }",
                "defaults.panel.quorum",
            ),
            (
                "panel: { members: [c, g], quorum: 0 }",
                "defaults.panel.quorum",
            ),
            (
                "panel: { members: [], quorum: 1 }",
                "defaults.panel.members:",
            ),
            (
                "panel_when: { paths: [\"a/**\"] }",
                "defaults.panel_when: there is no `defaults.panel`",
            ),
        ] {
            let err = panel(bad).unwrap_err();
            assert!(err.starts_with(key), "{bad}: {err}");
        }
        assert!(panel("panel: { members: [c, w2], quorum: 1, allow_same_family: true }").is_ok());
    }
}
