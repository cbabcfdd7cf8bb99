//! Preparing a fetched plugin on this host: system requirements on `PATH`,
//! secret files (mode 0600), then the requirements command in `ENTRYPOINT`.
//! A plugin with its own user (`[aigis] users`) gets its tree and secret
//! files owned by that user, and its requirements command runs as it.
//!
//! The requirements command's output is relayed line by line like a plugin's
//! own output, so an operator sees why `pip install` failed in the plugin's log.

use crate::group::GroupGuard;
use crate::output::relay;
use proto::{FromAgent, InstallSpec, OutputStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;
use tokio::sync::mpsc;

/// `Request::Install`: the plugin's files made ready (its ENTRYPOINT,
/// system requirements, secrets, its user's ownership). What fails here
/// is for the operator to fix.
pub async fn install(spec: InstallSpec) -> Result<(), String> {
    if !spec.entrypoint.is_dir() {
        return Err(format!(
            "ENTRYPOINT {} is not a directory",
            spec.entrypoint.display()
        ));
    }
    check_system_requirements(&spec.system_requirements)?;
    let user = crate::user::resolve(&spec.plugin, spec.user.as_deref())?;
    let root = spec.root.clone();
    let secrets = spec.secrets;
    let owner = user.as_ref().map(|u| (u.uid, u.gid));
    let name = spec.user.clone().unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        for file in &secrets {
            secrets::install_owned(file, &root, owner)
                .map_err(|e| format!("secret `{}`: could not write it: {e}", file.key))?;
        }
        if let Some((uid, gid)) = owner {
            crate::user::own_tree(&root, uid, gid)
                .map_err(|e| format!("cannot give {} to its user `{name}`: {e}", root.display()))?;
        }
        Ok::<_, String>(())
    })
    .await
    .map_err(|e| format!("writing secrets: {e}"))??;
    Ok(())
}

/// `Request::Requirements`: the requirements command, in the plugin's
/// Python environment when it has one. What fails here may heal by itself
/// (a package index that is not up yet), and central tries it again.
pub async fn requirements(
    spec: InstallSpec,
    events: mpsc::Sender<FromAgent>,
) -> Result<(), String> {
    let Some(line) = spec.requirements else {
        return Ok(());
    };
    let user = crate::user::resolve(&spec.plugin, spec.user.as_deref())?;
    let owner = user.as_ref().map(|u| (u.uid, u.gid));
    let env = match &spec.python_env {
        Some(env) => Some(python_env(&spec.plugin, env, &line, owner, &events).await?),
        None => None,
    };
    if env.as_ref().is_some_and(|e| !e.fresh) {
        note(
            &spec.plugin,
            &events,
            "requirements unchanged: the Python environment is kept as it is",
        )
        .await;
        return Ok(());
    }
    let mut vars = env
        .as_ref()
        .map(|e| crate::venv::vars(&e.dir))
        .unwrap_or_default();
    if env.is_some() {
        // A home network often has no way out: pip asking PyPI whether it
        // is the newest would only wait.
        vars.push(("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()));
    }
    let sandbox = match &spec.confine {
        Some(confine) => crate::confine::prepare(confine, &[])?,
        None => None,
    };
    run_requirements(
        &spec.plugin,
        &line,
        &spec.entrypoint,
        &events,
        user.as_ref(),
        &vars,
        sandbox.as_ref(),
    )
    .await?;
    if let Some(env) = env {
        env.installed().map_err(|e| {
            format!(
                "cannot mark the Python environment {} made: {e}",
                env.dir.display()
            )
        })?;
    }
    Ok(())
}

/// The plugin's environment, made (or kept) for its requirements command
/// `line`, and given to its user when it has one.
async fn python_env(
    plugin: &str,
    env: &proto::PythonEnv,
    line: &str,
    owner: Option<(u32, u32)>,
    events: &mpsc::Sender<FromAgent>,
) -> Result<crate::venv::Ready, String> {
    let ready = crate::venv::prepare(
        &env.dir,
        plugin,
        line,
        env.requirements_file.as_deref(),
        env.python.as_deref(),
    )
    .await?;
    for w in &ready.warnings {
        note(plugin, events, w).await;
    }
    if ready.made {
        note(
            plugin,
            events,
            &format!("made its Python environment {}", ready.dir.display()),
        )
        .await;
    }
    if ready.fresh {
        if let Some((uid, gid)) = owner {
            let dir = ready.dir.clone();
            tokio::task::spawn_blocking(move || crate::user::own_tree(&dir, uid, gid))
                .await
                .map_err(|e| format!("giving the Python environment to its user: {e}"))?
                .map_err(|e| format!("cannot give the Python environment to its user: {e}"))?;
        }
    }
    Ok(ready)
}

/// A line of the agent's own in the plugin's install output.
async fn note(plugin: &str, events: &mpsc::Sender<FromAgent>, line: &str) {
    let note = crate::output::agent_note(plugin, OutputStream::Install, line);
    let _ = events.send(FromAgent::Event(note)).await;
}

async fn run_requirements(
    plugin: &str,
    line: &str,
    cwd: &Path,
    events: &mpsc::Sender<FromAgent>,
    user: Option<&crate::user::User>,
    env: &[(String, String)],
    sandbox: Option<&crate::confine::Sandbox>,
) -> Result<(), String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(line)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.env_clear()
        .envs(crate::user::clean_env(user))
        .envs(env.iter().map(|(k, v)| (k, v)));
    let switch = user.and_then(crate::user::User::switch);
    let sandbox_fd = sandbox.map(crate::confine::Sandbox::fd);
    if switch.is_some() || sandbox_fd.is_some() {
        // SAFETY: confine::enter and Switch::apply make only
        // async-signal-safe calls; the sandbox's descriptor stays open in
        // the parent until the spawn has returned.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = sandbox_fd {
                    crate::confine::enter(fd)?;
                }
                match &switch {
                    Some(switch) => switch.apply(),
                    None => Ok(()),
                }
            });
        }
    }
    let (mut child, _own) = crate::contain::spawn(&mut cmd)
        .map_err(|e| format!("could not run the requirements command: {e}"))?;
    // Ends the whole group however this returns (or is dropped at shutdown).
    let _group = child.id().map(GroupGuard);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(relay(out, OutputStream::Install, plugin, events));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(relay(err, OutputStream::Install, plugin, events));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("requirements command: {e}"))?;
    for r in readers {
        let _ = r.await;
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("requirements command `{line}` failed ({status})"))
    }
}

/// `SYSTEM_REQUIREMENTS`: every one must be on this host's `PATH`; the
/// error lists all that are missing.
pub fn check_system_requirements(wanted: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|r| find_on_path(r).is_none())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing system requirement(s) on PATH: {}",
            missing.join(", ")
        ))
    }
}

/// The executable `name` resolves to on this host's `PATH`, if any. A name
/// with a `/` is taken as a path.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("surely-not-a-command-aigis").is_none());
        assert!(find_on_path("/bin/sh").is_some());
    }
}
