//! A container on user-defined networks (`--network NAME`): its address is taken when it is
//! created and freed when it is removed; its namespace and veths (`kiln-network`) are made
//! at each start and removed when its run ends.

use crate::container::{Container, Containers};
use crate::Result;
use kiln_network::{Endpoint, Network, Networks};
use std::path::Path;

impl Containers {
    /// The state directory the containers are in.
    pub(crate) fn root(&self) -> &Path {
        self.dir().parent().unwrap_or(Path::new("/"))
    }
}

impl Container {
    fn networks_store(&self) -> Networks {
        // ROOT/containers/<id>
        let root = self
            .dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        Networks::new(root)
    }

    /// Takes its address on its network (`create`).
    pub(crate) fn connect_networks(&self) -> Result<()> {
        if let Some(net) = &self.config.network_name {
            self.networks_store().connect(
                net,
                &self.config.id,
                &self.config.name,
                &self.config.network_aliases,
                None,
            )?;
        }
        Ok(())
    }

    /// Its networks, with its endpoint on each (empty without `--network NAME`).
    pub fn networks(&self) -> Result<Vec<(Network, Endpoint)>> {
        if self.config.network_name.is_none() {
            return Ok(vec![]);
        }
        Ok(self.networks_store().of_container(&self.config.id)?)
    }

    /// Makes its namespace and veths before its sandbox starts.
    pub(crate) fn network_up(&self) -> Result<()> {
        if self.config.network_name.is_none() {
            return Ok(());
        }
        let store = self.networks_store();
        let nets = store.of_container(&self.config.id)?;
        // The network's name server is this binary in a hidden mode.
        let exe = std::env::current_exe().ok();
        kiln_network::attach(&store, &self.config.id, &nets, exe.as_deref())?;
        Ok(())
    }

    /// Removes its namespace once its run ended (its veths go with it).
    pub(crate) fn network_down(&self) -> Result<()> {
        if self.config.network_name.is_none() {
            return Ok(());
        }
        kiln_network::detach(&self.networks_store(), &self.config.id)?;
        Ok(())
    }

    /// Frees its addresses and removes its namespace (`rm`).
    pub(crate) fn release_networks(&self) -> Result<()> {
        if self.config.network_name.is_none() {
            return Ok(());
        }
        let store = self.networks_store();
        kiln_network::detach(&store, &self.config.id)?;
        store.disconnect(None, &self.config.id)?;
        Ok(())
    }
}

impl Container {
    /// `network connect [--alias A] [--ip IP] NET CTR`: an address on one more network and,
    /// when it runs, an interface on it at once. Only for a container made with `--network
    /// NAME` (one with a namespace kiln-network made).
    pub fn connect_network(
        &mut self,
        net: &str,
        aliases: &[String],
        ip: Option<std::net::Ipv4Addr>,
    ) -> Result<()> {
        if self.config.network_name.is_none() {
            return Err(crate::Error::NotOnUserNetwork(self.config.name.clone()));
        }
        self.refresh()?;
        let store = self.networks_store();
        let (network, ep) = store.connect(net, &self.config.id, &self.config.name, aliases, ip)?;
        if self.is_running() {
            let exe = std::env::current_exe().ok();
            if let Err(e) = kiln_network::netns::plug_running(
                &store,
                &self.config.id,
                &network,
                &ep,
                exe.as_deref(),
            ) {
                let _ = store.disconnect(Some(&network.id), &self.config.id);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// `network disconnect NET CTR`: its interface on the network goes at once (when it
    /// runs) and its address is freed.
    pub fn disconnect_network(&mut self, net: &str) -> Result<()> {
        let store = self.networks_store();
        let network = store.find(net)?;
        let Some((_, ep)) = store
            .of_container(&self.config.id)?
            .into_iter()
            .find(|(n, _)| n.id == network.id)
        else {
            return Err(crate::Error::NotConnected(
                self.config.name.clone(),
                network.name.clone(),
            ));
        };
        kiln_network::netns::unplug_running(&store, &self.config.id, &ep)?;
        store.disconnect(Some(&network.id), &self.config.id)?;
        Ok(())
    }
}

/// What a crash (a kill -9 of any kiln process) can leave of networks, removed: addresses
/// and namespaces of containers that no longer exist, namespaces of networks that do not.
pub fn reconcile_networks(root: &Path) -> Result<()> {
    let containers = Containers::new(root).dir().to_path_buf();
    let exists = |id: &str| containers.join(id).join("config.json").is_file();
    Networks::new(root).reconcile(exists, exists)?;
    Ok(())
}
