# The user's example network, unchanged but for the git server's address:
# both targetHost names are mapped to local test hosts by the demo's
# ~/.ssh/config (see scripts/demo.sh).
let
  proxyHostname = "proxy.example.com";
  gitHostname = "git.example.com";
in {
  network.description = "Staging environment for our git setup";
  defaults.imports = [ ./common.nix ];

  reverse-proxy = { nodes, ... }: {
    deployment.targetHost = proxyHostname;
    services.nginx = {
      enable = true;
      virtualHosts."example.com".locations."/" = {
        proxyPass = "http://${gitHostname}:${nodes.gitServer.config.services.forgejo.port}";
      };
    };
  };

  gitServer = _: {
    deployment.targetHost = gitHostname;
    services.forgejo.enable = true;
  };
}
