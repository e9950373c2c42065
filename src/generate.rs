//! generate: files derived from ferry's own definitions — shell completion scripts and man pages from the clap definition it is given, JSON Schemas of the policy files — written to an output or into a directory.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::policy::schema::{schema_text, SchemaKind};

/// `ferry completions SHELL`: the completion script for `cmd` to `out`.
pub fn completions(
    mut cmd: clap::Command,
    shell: clap_complete::Shell,
    mut out: impl Write,
) -> Result<()> {
    // clap_complete panics on a failed write; render in memory so a closed pipe is an error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ferry", &mut script);
    out.write_all(&script)?;
    Ok(out.flush()?)
}

/// `ferry man`: without `dir`, the top page to `out`; with it, `ferry.1` and one page per
/// command written into `dir`.
pub fn man(cmd: clap::Command, dir: Option<&Path>, mut out: impl Write) -> Result<()> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut out)?;
        return Ok(out.flush()?);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Usage(format!("man: cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| Error::Usage(format!("man: cannot write into {}: {e}", dir.display())))?;
    Ok(())
}

/// `ferry policy schema`: without `dir`, `kind`'s schema to `out`; with it, every kind's (or
/// only `kind`'s) schema written into `dir` as its [`SchemaKind::file_name`], each path to `out`.
pub fn schemas(kind: Option<SchemaKind>, dir: Option<&Path>, mut out: impl Write) -> Result<()> {
    let Some(dir) = dir else {
        let kind =
            kind.ok_or_else(|| Error::Usage("policy schema: give --kind or --out".into()))?;
        out.write_all(schema_text(kind).as_bytes())?;
        return Ok(out.flush()?);
    };
    let kinds = kind.map_or(SchemaKind::ALL.to_vec(), |k| vec![k]);
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Usage(format!(
            "policy schema: cannot create {}: {e}",
            dir.display()
        ))
    })?;
    for kind in kinds {
        let path = dir.join(kind.file_name());
        std::fs::write(&path, schema_text(kind)).map_err(|e| {
            Error::Usage(format!(
                "policy schema: cannot write {}: {e}",
                path.display()
            ))
        })?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(out.flush()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("ferry")
            .about("Move images.")
            .subcommand(clap::Command::new("copy").about("Copy an image."))
    }

    #[test]
    fn pages_go_to_the_output_or_into_a_directory() {
        let mut out = Vec::new();
        man(cmd(), None, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains(".TH ferry"));
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("man1");
        let mut out = Vec::new();
        man(cmd(), Some(&dir), &mut out).unwrap();
        assert!(out.is_empty());
        assert!(dir.join("ferry.1").is_file());
        assert!(dir.join("ferry-copy.1").is_file());
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = man(cmd(), Some(&file.join("x")), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().starts_with("man: cannot create "), "{e}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        completions(cmd(), clap_complete::Shell::Bash, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("ferry") && script.contains("copy"));
    }

    #[test]
    fn schemas_go_to_the_output_or_into_a_directory() {
        let mut out = Vec::new();
        schemas(Some(SchemaKind::Mirror), None, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            schema_text(SchemaKind::Mirror)
        );
        let e = schemas(None, None, &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "policy schema: give --kind or --out");
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("schema");
        let mut out = Vec::new();
        schemas(None, Some(&dir), &mut out).unwrap();
        let listed = String::from_utf8(out).unwrap();
        for kind in SchemaKind::ALL {
            let path = dir.join(kind.file_name());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), schema_text(kind));
            assert!(listed.contains(&path.display().to_string()));
        }
        let mut out = Vec::new();
        schemas(Some(SchemaKind::Registries), Some(d.path()), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
