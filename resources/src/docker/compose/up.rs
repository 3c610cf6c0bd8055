//! Apply: `up` (with the restarts and signals a refresh asks for), the wait for health, `down`.

use super::*;

impl Compose {
    /// Compose's config hash of every service it would run.
    pub(super) async fn config_hashes(
        &self,
        inv: &Invocation<'_>,
    ) -> Result<BTreeMap<String, String>, ResourceError> {
        let out = inv.run_ok(&["config", "--hash", "*"]).await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let (s, h) = l.trim().split_once(' ')?;
                Some((s.to_string(), h.trim().to_string()))
            })
            .collect())
    }

    pub(super) async fn wait_ready(&self, project: &Project) -> Result<(), ResourceError> {
        let started = Instant::now();
        loop {
            let list = containers(&project.name).await?;
            if let Some(c) = list.iter().find(|c| {
                project.one_shots.contains(&c.service)
                    && !c.running
                    && c.exit_code.is_some_and(|x| x != 0)
            }) {
                return Err(ResourceError::Command(format!(
                    "the one-shot service {} exited with {} (see: docker logs {})",
                    c.service,
                    c.exit_code.unwrap_or_default(),
                    &c.id[..c.id.len().min(12)]
                )));
            }
            let waiting: Vec<String> = list
                .iter()
                .filter(|c| !(project.one_shots.contains(&c.service) && c.completed()))
                .filter(|c| !c.running || matches!(c.health, Health::Starting | Health::Unhealthy))
                .map(|c| {
                    let why = if let (false, Some(code)) = (c.running, c.exit_code) {
                        format!("exited with {code}")
                    } else if !c.running {
                        c.state.clone()
                    } else if c.health == Health::Starting {
                        "health: starting".into()
                    } else {
                        "unhealthy".into()
                    };
                    format!("{} ({why})", c.service)
                })
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.wait_timeout {
                return Err(ResourceError::Failed(format!(
                    "services not running and healthy after {} s: {}",
                    self.wait_timeout.as_secs(),
                    waiting.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `up -d`, then the restarts and the wait; returns what the operator should read.
    /// Put back what compose alone would leave as it is, its files being unchanged: services
    /// recreated by hand or cut off a network (`--force-recreate`), and replicas added or
    /// removed by hand (`--scale SERVICE=N`). Then the record is written again.
    pub(super) async fn repair_by_hand_changes(
        &self,
        host: &Mutate,
        forced: &[String],
        scaled: &[(String, usize)],
    ) -> Result<Vec<String>, ResourceError> {
        let cli = compose_cli::find().await?;
        let project = self.project(host)?;
        let real = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real);
        let mut notes = Vec::new();
        let run = |args: Vec<String>| {
            let inv = &inv;
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = inv.run_ok(&args).await?;
                Ok::<String, ResourceError>(format!(
                    "{}:\n{}",
                    inv.command_line(&args),
                    out.summary()
                ))
            }
        };
        // Never `--no-deps`: compose then hashes the named services without their `depends_on`,
        // so the containers it makes carry a configuration hash the next plain `up` disagrees
        // with (and recreates). Without it, dependencies already as declared are left alone.
        if !scaled.is_empty() {
            let mut args: Vec<String> = ["up", "--detach"].map(String::from).to_vec();
            for (s, n) in scaled {
                args.push("--scale".into());
                args.push(format!("{s}={n}"));
            }
            args.extend(scaled.iter().map(|(s, _)| s.clone()));
            notes.push(run(args).await?);
        }
        if !forced.is_empty() {
            let mut args: Vec<String> = ["up", "--detach", "--force-recreate"]
                .map(String::from)
                .to_vec();
            args.extend(forced.iter().cloned());
            notes.push(run(args).await?);
        }
        if self.wait {
            self.wait_ready(&project).await?;
        }
        self.record(host, &project, cli, None).await?;
        Ok(notes)
    }

    pub(super) async fn up(
        &self,
        host: &Mutate,
        restart_unhealthy: &[String],
        refresh: &Refresh,
    ) -> Result<Applied, ResourceError> {
        let restart_all = *refresh == Refresh::Restart;
        let cli = compose_cli::find().await?;
        let project = self.project(host)?;
        let real = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real);
        let before = containers(&project.name).await?;
        let mut applied = Applied::default();
        let v2 = matches!(cli.flavour, compose_cli::Flavour::V2 { .. });
        if self.pull == "always" && !v2 {
            inv.run_ok(&["pull"]).await?;
        }
        let mut args = vec!["up", "--detach"];
        if v2 {
            args.extend(["--pull", self.pull]);
        }
        if self.remove_orphans {
            args.push("--remove-orphans");
        }
        let out = inv.run_ok(&args).await?;
        let said = out.summary();
        if !said.is_empty() {
            applied
                .notes
                .push(format!("{}:\n{said}", inv.command_line(&args)));
        }
        let after = containers(&project.name).await?;
        let old_ids: BTreeSet<&str> = before.iter().map(|c| c.id.as_str()).collect();
        let recreated: BTreeSet<&str> = after
            .iter()
            .filter(|c| !old_ids.contains(c.id.as_str()))
            .map(|c| c.service.as_str())
            .collect();
        let docker = crate::docker::engine().await?;
        let mut restart: BTreeSet<&str> = BTreeSet::new();
        if restart_all {
            restart.extend(
                after
                    .iter()
                    .filter(|c| c.running)
                    .map(|c| c.service.as_str()),
            );
        }
        restart.extend(restart_unhealthy.iter().map(String::as_str));
        // nginx resolves its upstreams once at start: recreating api/web under it leaves it
        // answering 502 until it restarts.
        if recreated
            .iter()
            .any(|s| !self.restart_on_recreate.iter().any(|r| r == s))
        {
            for s in &self.restart_on_recreate {
                if !recreated.contains(s.as_str()) {
                    restart.insert(s);
                }
            }
        }
        for c in after
            .iter()
            .filter(|c| restart.contains(c.service.as_str()))
        {
            docker
                .restart_container(
                    &c.id,
                    None::<bollard::query_parameters::RestartContainerOptions>,
                )
                .await
                .map_err(|e| {
                    crate::docker::api_error(&format!("cannot restart {}", c.service), e)
                })?;
        }
        if !restart.is_empty() {
            let list: Vec<&str> = restart.into_iter().collect();
            applied
                .notes
                .push(format!("restarted: {}", list.join(", ")));
        }
        if let Refresh::Signal(sig) = refresh {
            let now = containers(&project.name).await?;
            let mut told = BTreeSet::new();
            for c in now.iter().filter(|c| c.running) {
                let opts = bollard::query_parameters::KillContainerOptionsBuilder::default()
                    .signal(sig)
                    .build();
                docker
                    .kill_container(&c.id, Some(opts))
                    .await
                    .map_err(|e| {
                        crate::docker::api_error(&format!("cannot send {sig} to {}", c.service), e)
                    })?;
                told.insert(c.service.as_str());
            }
            let told: Vec<&str> = told.into_iter().collect();
            applied
                .notes
                .push(format!("sent {sig} to {}", told.join(", ")));
        }
        if self.wait {
            self.wait_ready(&project).await?;
        }
        self.record(host, &project, cli, None).await?;
        Ok(applied)
    }

    pub(super) async fn down(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let project = self.project(host)?;
        let cli = compose_cli::find().await?;
        let real = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real);
        let mut args = vec!["down"];
        if self.remove_orphans {
            args.push("--remove-orphans");
        }
        inv.run_ok(&args).await?;
        let name = project.name;
        Record::forget(host, &name);
        Ok(Applied::default())
    }
}
