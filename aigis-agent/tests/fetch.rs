//! Fetching against real git repositories (file:// and http://127.0.0.1)
//! and real directories.

use aigis_agent::fetch::{copy_local, fetch_git, FetchOutcome};
use aigis_e2e::git::{git, GitHttpServer, TestRepo};
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn read(p: &std::path::Path) -> String {
    fs::read_to_string(p).unwrap()
}

#[test]
fn clone_then_update_then_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(tmp.path(), "plug");
    repo.write("a.txt", "one");
    let first = repo.commit("one");
    let dest = tmp.path().join("ext/plug");

    let out = fetch_git(&repo.file_url(), None, &dest).unwrap();
    assert_eq!(
        out,
        FetchOutcome::Cloned {
            commit: first[..10].to_string()
        }
    );
    assert_eq!(read(&dest.join("a.txt")), "one");

    repo.write("b.txt", "two");
    let second = repo.commit("two");
    // Files the plugin or its secrets add are untracked and do not block updates.
    fs::write(dest.join("secret.token"), "x").unwrap();
    let out = fetch_git(&repo.file_url(), None, &dest).unwrap();
    assert_eq!(
        out,
        FetchOutcome::Updated {
            from: first[..10].to_string(),
            to: second[..10].to_string()
        }
    );
    assert_eq!(read(&dest.join("b.txt")), "two");

    let out = fetch_git(&repo.file_url(), None, &dest).unwrap();
    assert_eq!(
        out,
        FetchOutcome::UpToDate {
            commit: second[..10].to_string()
        }
    );
}

#[test]
fn references_pin_a_branch_a_tag_or_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(tmp.path(), "plug");
    repo.write("v.txt", "1");
    let c1 = repo.commit("v1");
    git(&repo.dir, &["tag", "v1"]);
    repo.write("v.txt", "2");
    repo.commit("v2");
    git(&repo.dir, &["checkout", "-q", "-b", "dev"]);
    repo.write("v.txt", "dev");
    repo.commit("dev");
    git(&repo.dir, &["checkout", "-q", "main"]);

    for (reference, want) in [
        ("v1", "1"),
        (c1.as_str(), "1"),
        ("dev", "dev"),
        ("main", "2"),
    ] {
        let dest = tmp
            .path()
            .join(format!("ext/{}", &reference[..reference.len().min(8)]));
        let out = fetch_git(&repo.file_url(), Some(reference), &dest).unwrap();
        assert!(
            matches!(out, FetchOutcome::Cloned { .. }),
            "{reference}: {out:?}"
        );
        assert_eq!(read(&dest.join("v.txt")), want, "{reference}");
    }

    let dest = tmp.path().join("ext/none");
    let err = fetch_git(&repo.file_url(), Some("nope"), &dest).unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn the_remote_default_branch_is_cloned_whatever_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(tmp.path(), "plug");
    git(&repo.dir, &["checkout", "-q", "-b", "trunk"]);
    repo.write("t.txt", "trunk");
    repo.commit("t");
    let dest = tmp.path().join("ext/plug");
    fetch_git(&repo.file_url(), None, &dest).unwrap();
    assert_eq!(read(&dest.join("t.txt")), "trunk");
    assert_eq!(git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"]), "trunk");
}

#[test]
fn a_failed_update_keeps_what_is_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(tmp.path(), "plug");
    repo.write("a.txt", "one");
    repo.commit("one");
    let url = repo.file_url();
    let dest = tmp.path().join("ext/plug");
    fetch_git(&url, None, &dest).unwrap();

    // Local modification: the fast-forward is refused, the edit survives.
    repo.write("a.txt", "upstream");
    repo.commit("upstream");
    fs::write(dest.join("a.txt"), "local edit").unwrap();
    let out = fetch_git(&url, None, &dest).unwrap();
    assert!(
        matches!(&out, FetchOutcome::Kept { reason } if reason.contains("local modifications")),
        "{out:?}"
    );
    assert_eq!(read(&dest.join("a.txt")), "local edit");

    // Unreachable remote: a warning, files intact.
    fs::rename(&repo.dir, tmp.path().join("moved")).unwrap();
    let out = fetch_git(&url, None, &dest).unwrap();
    assert!(
        matches!(&out, FetchOutcome::Kept { reason } if reason.contains("fetch")),
        "{out:?}"
    );
    assert_eq!(read(&dest.join("a.txt")), "local edit");
}

#[test]
fn a_failed_clone_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ext/plug");
    let url = format!("file://{}/nowhere", tmp.path().display());
    let err = fetch_git(&url, None, &dest).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert!(!dest.exists());
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("ext")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn clone_and_update_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    let repo = TestRepo::new(&repos, "web");
    repo.write("index.txt", "v1");
    repo.commit("v1");
    let server = GitHttpServer::start(&repos);
    let dest = tmp.path().join("ext/web");
    let out = fetch_git(&server.url("web"), None, &dest).unwrap();
    assert!(matches!(out, FetchOutcome::Cloned { .. }), "{out:?}");
    assert_eq!(read(&dest.join("index.txt")), "v1");
    repo.write("index.txt", "v2");
    repo.commit("v2");
    let out = fetch_git(&server.url("web"), None, &dest).unwrap();
    assert!(matches!(out, FetchOutcome::Updated { .. }), "{out:?}");
    assert_eq!(read(&dest.join("index.txt")), "v2");
}

#[test]
fn copy_local_is_copytree_and_never_overwrites() {
    let tmp = public_tempdir();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("deep/er")).unwrap();
    fs::write(src.join("deep/er/f.txt"), "deep").unwrap();
    fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tmp.path().join("outside.txt"), "linked").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.txt"), src.join("link.txt")).unwrap();

    // `link.txt` leads outside the source and outside the home: followed.
    let dest = tmp.path().join("home/ext/p");
    assert_eq!(copy_local("p", &src, &dest).unwrap(), FetchOutcome::Copied);
    assert_eq!(read(&dest.join("deep/er/f.txt")), "deep");
    let mode = fs::metadata(dest.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let link = fs::symlink_metadata(dest.join("link.txt")).unwrap();
    assert!(link.file_type().is_file(), "symlink was not followed");
    assert_eq!(read(&dest.join("link.txt")), "linked");

    fs::write(src.join("deep/er/f.txt"), "changed").unwrap();
    let out = copy_local("p", &src, &dest).unwrap();
    assert!(matches!(out, FetchOutcome::Kept { .. }), "{out:?}");
    assert_eq!(read(&dest.join("deep/er/f.txt")), "deep");

    let missing = tmp.path().join("missing");
    let err = copy_local("q", &missing, &tmp.path().join("ext/q")).unwrap_err();
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn copy_local_refuses_links_into_the_home_and_follows_the_others() {
    use std::os::unix::fs::symlink;
    let tmp = public_tempdir();
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join("secrets/victim")).unwrap();
    fs::write(home.join("secrets/victim/token"), "s3cret").unwrap();
    fs::create_dir_all(home.join("ext")).unwrap();
    fs::write(tmp.path().join("shared.txt"), "shared").unwrap();

    // Inside the source, and outside the home: followed.
    let src = tmp.path().join("src/ok");
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("data/real.txt"), "inner").unwrap();
    symlink("data/real.txt", src.join("inner.txt")).unwrap();
    symlink("data", src.join("datalink")).unwrap();
    symlink(tmp.path().join("shared.txt"), src.join("shared.txt")).unwrap();
    let dest = home.join("ext/ok");
    assert_eq!(copy_local("ok", &src, &dest).unwrap(), FetchOutcome::Copied);
    assert_eq!(read(&dest.join("inner.txt")), "inner");
    assert_eq!(read(&dest.join("datalink/real.txt")), "inner");
    assert_eq!(read(&dest.join("shared.txt")), "shared");

    // Into the home, as a file, a directory or a chain of links: refused.
    for (name, link) in [
        ("file", home.join("secrets/victim/token")),
        ("dir", home.join("secrets")),
        ("chain", tmp.path().join("hop")),
    ] {
        let src = tmp.path().join("src").join(name);
        fs::create_dir_all(src.join("sub")).unwrap();
        symlink(&link, src.join("sub/leak")).unwrap();
        let _ = symlink(home.join("secrets/victim"), tmp.path().join("hop"));
        let dest = home.join("ext").join(name);
        let err = copy_local(name, &src, &dest).unwrap_err().to_string();
        assert!(err.contains(&format!("plugin `{name}`")), "{err}");
        assert!(err.contains("sub/leak") && err.contains("home"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("victim"), "{err}");
        assert!(!dest.exists(), "{name}: a copy was made");
    }
    let left: Vec<_> = fs::read_dir(home.join("ext")).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "half-made copies were left: {left:?}");

    // A source that holds the home would copy it: refused.
    let err = copy_local("all", tmp.path(), &home.join("ext/all")).unwrap_err();
    assert!(err.to_string().contains("contains AIGIS's home"), "{err}");
}

/// A temporary directory every user may search, as `/usr/share` is: what
/// a link leads to there is public.
fn public_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

/// What a hostile plugin directory could carry out of central: a link to
/// a file only central's user may read (its SSH key), a FIFO (which would
/// block the copy), a link to `/dev/zero` (which would never end), and a
/// setuid file (which a copy by root would make setuid-root).
#[test]
fn copy_local_carries_no_private_file_no_device_and_no_setuid_bit() {
    use std::os::unix::fs::symlink;
    let tmp = public_tempdir();
    let ssh = tmp.path().join("dotssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(ssh.join("id_ed25519"), "PRIVATE KEY").unwrap();
    fs::write(tmp.path().join("closed.txt"), "closed").unwrap();
    fs::set_permissions(
        tmp.path().join("closed.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let home = tmp.path().join("home");
    let fifo = |at: &std::path::Path| {
        let path = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo of a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    };
    type Plant<'a> = &'a dyn Fn(&std::path::Path);
    let cases: [(&str, Plant, &str); 4] = [
        (
            "key",
            &|src| symlink(ssh.join("id_ed25519"), src.join("k")).unwrap(),
            "k",
        ),
        (
            "closed",
            &|src| symlink(tmp.path().join("closed.txt"), src.join("c")).unwrap(),
            "c",
        ),
        ("fifo", &|src| fifo(&src.join("pipe")), "pipe"),
        (
            "zero",
            &|src| symlink("/dev/zero", src.join("z")).unwrap(),
            "z",
        ),
    ];
    for (name, plant, planted) in cases {
        let src = tmp.path().join("src").join(name);
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("main.sh"), "true\n").unwrap();
        plant(&src);
        let dest = home.join("ext").join(name);
        let err = copy_local(name, &src, &dest).unwrap_err().to_string();
        assert!(err.contains(&format!("plugin `{name}`")), "{err}");
        assert!(err.contains(&format!("{name}/{planted}")), "{err}");
        assert!(
            !err.contains("dotssh") && !err.contains("closed.txt"),
            "{err}"
        );
        assert!(!err.contains("PRIVATE"), "{err}");
        assert!(!dest.exists(), "{name}: a copy was made");
    }

    let src = tmp.path().join("src/setuid");
    fs::create_dir_all(&src).unwrap();
    fs::copy("/usr/bin/id", src.join("id")).unwrap();
    fs::set_permissions(src.join("id"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o3775)).unwrap();
    let dest = home.join("ext/setuid");
    assert_eq!(
        copy_local("setuid", &src, &dest).unwrap(),
        FetchOutcome::Copied
    );
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dest.join("id")), 0o755);
    assert_eq!(mode(&dest), 0o775);
}

#[test]
fn a_plugin_config_must_be_the_plugins_own_file() {
    use aigis_agent::fetch::plugin_file;
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("private.txt"), "TOKEN=abc").unwrap();
    let src = tmp.path().join("src/p");
    fs::create_dir_all(src.join("AIGIS")).unwrap();
    fs::create_dir_all(src.join("configs")).unwrap();
    fs::write(src.join("configs/prod.config"), "PLUGIN_TYPE = 'core'\n").unwrap();
    // A link inside the plugin is its own file.
    symlink("../configs/prod.config", src.join("AIGIS/AIGIS.config")).unwrap();
    assert!(plugin_file("p", &src, "AIGIS.config").is_ok());
    // One that leads outside, even outside the home, is not.
    symlink(tmp.path().join("private.txt"), src.join("AIGIS/AIGIS.core")).unwrap();
    let err = plugin_file("p", &src, "AIGIS.core").unwrap_err();
    assert!(
        err.contains("plugin `p`") && err.contains("AIGIS.core"),
        "{err}"
    );
    assert!(!err.contains("TOKEN") && !err.contains("private"), "{err}");
    let err = copy_local("p", &src, &tmp.path().join("home/ext/p")).unwrap_err();
    assert!(err.to_string().contains("AIGIS.core"), "{err}");
    assert!(!tmp.path().join("home/ext/p").exists());
    // Nor may AIGIS/ itself lead out.
    let other = tmp.path().join("src/q");
    fs::create_dir_all(&other).unwrap();
    symlink(tmp.path(), other.join("AIGIS")).unwrap();
    assert!(
        plugin_file("q", &other, "AIGIS.config").is_ok(),
        "missing is not refused here"
    );
    fs::write(tmp.path().join("AIGIS.config"), "x").unwrap();
    assert!(plugin_file("q", &other, "AIGIS.config").is_err());
}

/// A plugin with its own user owns its clone's tree and could put another
/// `.git` there: only the directory AIGIS made (not a link, its owner) is
/// fetched into.
#[test]
fn a_git_dir_that_is_not_the_one_aigis_made_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::new(tmp.path(), "plug");
    repo.write("a.txt", "one");
    repo.commit("one");
    let dest = tmp.path().join("ext/plug");
    fetch_git(&repo.file_url(), None, &dest).unwrap();
    fs::rename(dest.join(".git"), tmp.path().join("elsewhere.git")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("elsewhere.git"), dest.join(".git")).unwrap();
    repo.write("a.txt", "two");
    repo.commit("two");
    let out = fetch_git(&repo.file_url(), None, &dest).unwrap();
    assert!(
        matches!(&out, FetchOutcome::Kept { reason } if reason.contains("is not the clone AIGIS made")),
        "{out:?}"
    );
    assert_eq!(read(&dest.join("a.txt")), "one");
}
