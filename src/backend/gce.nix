# targetEnv "gce": a Google Compute Engine instance that NixOps' GCE plugin
# (nixops-gce) made. Its deployment.gce.* options, with the plugin's names,
# types and defaults, so that its networks evaluate unchanged; what the
# plugin's module sets on such a machine; and its resource types, whose
# options beyond their name stay as the network writes them.
{
  module = { config, lib, name, uuid, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.deployment.gce;
      # A resource of a given NixOps type (its `_type`).
      resource = type: lib.mkOptionType {
        name = "resource of type ‘${type}’";
        check = x: (x._type or "") == type;
        merge = lib.mergeOneOption;
      };
      shortUuid = lib.replaceStrings [ "-" ] [ "" ] uuid;
      devPrefix = "/dev/disk/by-id/scsi-0Google_PersistentDisk_";
      diskName = d: if d.disk != null then d.disk else "${cfg.machineName}-${d.disk_name}";
      # A file system's disk is named after its mount point unless named.
      withDiskName = mountPoint: d: d // {
        disk_name =
          if d.disk_name == null && d.disk == null
          then lib.replaceStrings [ "/" "." "_" ] [ "-" "-" "-" ] (lib.substring 1 (lib.stringLength mountPoint - 1) mountPoint)
          else d.disk_name;
      };
      image = {
        options = {
          name = mkOption { default = null; type = types.nullOr types.str; description = "The image's name."; };
          family = mkOption { default = null; type = types.nullOr types.str; description = "The image family (its latest image)."; };
          project = mkOption { default = null; type = types.nullOr types.str; description = "The project the image belongs to."; };
        };
      };
      disk = { config, ... }: {
        options = {
          disk_name = mkOption { default = null; type = types.nullOr types.str; description = "The name of a disk to make."; };
          disk = mkOption {
            default = null;
            type = types.nullOr (types.either types.str (resource "gce-disk"));
            apply = x: if x == null || builtins.isString x then x else x.name;
            description = "A gceDisks resource, or the name of a disk made elsewhere, to attach.";
          };
          snapshot = mkOption { default = null; type = types.nullOr types.str; description = "The snapshot a new disk starts from."; };
          image = mkOption {
            default = { };
            type = types.nullOr (types.either (resource "gce-image") (types.submodule image));
            description = "The image (or image family, or gceImages resource) a new disk starts from.";
          };
          size = mkOption { default = null; type = types.nullOr types.int; description = "A new disk's size in GiB."; };
          diskType = mkOption { default = "standard"; type = types.addCheck types.str (v: builtins.elem v [ "standard" "ssd" ]); description = "standard or ssd."; };
          readOnly = mkOption { default = false; type = types.bool; description = "Whether the disk is attached read-only."; };
          bootDisk = mkOption { default = false; type = types.bool; description = "Whether the instance boots from the disk."; };
          deleteOnTermination = mkOption { type = types.bool; description = "Whether the disk goes with the instance."; };
          encrypt = mkOption { default = false; type = types.bool; description = "Whether the disk is encrypted with LUKS."; };
          cipher = mkOption { default = "aes-cbc-essiv:sha256"; type = types.str; description = "The LUKS cipher."; };
          keySize = mkOption { default = 128; type = types.int; description = "The LUKS key's size."; };
          passphrase = mkOption { default = ""; type = types.str; description = "The LUKS passphrase; empty: one is generated (and kept in state)."; };
        };
        config.deleteOnTermination = lib.mkDefault (config.disk == null);
      };
      fileSystem = { config, ... }: {
        options.gce = mkOption {
          default = null;
          type = types.nullOr (types.submodule disk);
          description = "A GCE disk to attach at this mount point (an entry of deployment.gce.blockDeviceMapping).";
        };
        config = lib.mkIf (config.gce != null) {
          device = lib.mkDefault "${if config.gce.encrypt then "/dev/mapper/" else devPrefix}${diskName (withDiskName config.mountPoint config.gce)}";
        };
      };
      credentials = what: {
        serviceAccount = mkOption { default = ""; type = types.str; description = "The service account's e-mail (else $GCE_SERVICE_ACCOUNT)."; };
        accessKey = mkOption { default = ""; type = types.either types.str types.path; description = "The service account's key file (else $ACCESS_KEY_PATH)."; };
        project = mkOption { default = ""; type = types.str; description = "The project owning the ${what} (else $GCE_PROJECT)."; };
      };
    in
    {
      options.deployment.gce = credentials "instance" // {
        machineName = mkOption { default = "n-${shortUuid}-${name}"; type = types.str; description = "The instance's name."; };
        region = mkOption { type = types.str; description = "The zone of the instance."; };
        instanceType = mkOption { default = "g1-small"; type = types.str; description = "The machine type."; };
        tags = mkOption { default = [ ]; type = types.listOf types.str; description = "The instance's network tags."; };
        labels = mkOption { default = { }; type = types.attrsOf types.str; description = "The instance's labels."; };
        metadata = mkOption { default = { }; type = types.attrsOf types.str; description = "The instance's metadata."; };
        ipAddress = mkOption { default = null; type = types.nullOr (types.either types.str (resource "gce-static-ip")); description = "A gceStaticIPs resource, or the name of an address made elsewhere."; };
        network = mkOption {
          default = null;
          type = types.nullOr (types.either types.str (resource "gce-network"));
          apply = x: if x == null || builtins.isString x then x else x.name;
          description = "A gceNetworks resource, or the name of a network made elsewhere.";
        };
        subnet = mkOption { default = null; type = types.nullOr types.str; description = "The subnet of the instance."; };
        canIpForward = mkOption { default = false; type = types.bool; description = "Whether the instance may forward packets."; };
        instanceServiceAccount = mkOption {
          default = { };
          type = types.submodule {
            options = {
              email = mkOption { default = "default"; type = types.str; description = "The service account's e-mail."; };
              scopes = mkOption { default = [ ]; type = types.listOf types.str; description = "Its scopes."; };
            };
          };
          description = "The service account the instance runs as.";
        };
        blockDeviceMapping = mkOption { default = { }; type = types.attrsOf (types.submodule disk); description = "The disks attached to the instance, by device."; };
        # The plugin's default is the NixOS image for the release (read
        # from nixpkgs' gce-images.nix); the tool never makes an instance,
        # so it is only read when the network reads it.
        bootstrapImage = mkOption {
          default = throw "deployment.gce.bootstrapImage: no default here (the GCE plugin took it from nixpkgs' gce-images.nix to make new instances, which this tool does not)";
          type = types.either (resource "gce-image") (types.submodule image);
          description = "The image new root disks start from.";
        };
        rootDiskSize = mkOption { default = null; type = types.nullOr types.int; description = "The root disk's size in GiB."; };
        rootDiskType = mkOption { default = "standard"; type = types.addCheck types.str (v: builtins.elem v [ "standard" "ssd" ]); description = "standard or ssd."; };
        scheduling.automaticRestart = mkOption { default = true; type = types.bool; description = "Whether GCE restarts the instance when it stops it."; };
        scheduling.onHostMaintenance = mkOption { default = "MIGRATE"; type = types.addCheck types.str (v: builtins.elem v [ "MIGRATE" "TERMINATE" ]); description = "MIGRATE or TERMINATE."; };
        scheduling.preemptible = mkOption { default = false; type = types.bool; description = "Whether the instance is preemptible."; };
      };
      options.fileSystems = mkOption { type = types.attrsOf (types.submodule fileSystem); };

      config = lib.mkIf (config.deployment.targetEnv == "gce") {
        nixpkgs.system = lib.mkOverride 900 "x86_64-linux";
        deployment.gce.blockDeviceMapping = {
          "${devPrefix}${cfg.machineName}-root" = {
            image = cfg.bootstrapImage;
            size = cfg.rootDiskSize;
            diskType = cfg.rootDiskType;
            bootDisk = true;
            disk_name = "root";
          };
        } // lib.listToAttrs (map
          (fs: let d = withDiskName fs.mountPoint fs.gce; in lib.nameValuePair "${devPrefix}${diskName d}" d)
          (builtins.filter (fs: fs.gce != null) (builtins.attrValues config.fileSystems)));
      };
    };

  info = [ "region" "instanceType" ];

  # Resource types: `_type` as the plugin sets it and the name it gives
  # (what machines' options read of them); the rest as written.
  resources =
    let
      named = type: prefix: { lib, uuid, name, ... }: {
        freeformType = lib.types.lazyAttrsOf lib.types.anything;
        options.name = lib.mkOption {
          default = "${prefix}${lib.replaceStrings [ "-" ] [ "" ] uuid}-${name}";
          type = lib.types.str;
          description = "The name of the ${type} at Google Cloud.";
        };
        config._type = type;
      };
    in
    {
      gceDisks = { kind = "gce-disk"; module = named "gce-disk" "n-"; };
      gceStaticIPs = { kind = "gce-static-ip"; module = named "gce-static-ip" "n-"; };
      gceNetworks = { kind = "gce-network"; module = named "gce-network" "n-"; };
      gceHTTPHealthChecks = { kind = "gce-http-health-check"; module = named "gce-http-health-check" "n-"; };
      gceTargetPools = { kind = "gce-target-pool"; module = named "gce-target-pool" "n-"; };
      gceForwardingRules = { kind = "gce-forwarding-rule"; module = named "gce-forwarding-rule" "n-"; };
      gseBuckets = { kind = "gse-bucket"; module = named "gse-bucket" "n-"; };
      gceImages = { kind = "gce-image"; module = named "gce-image" "n-"; };
      gceRoutes = {
        kind = "gce-route";
        module = { lib, uuid, name, ... }: {
          freeformType = lib.types.lazyAttrsOf lib.types.anything;
          options.name = lib.mkOption { default = "route-${uuid}-${name}"; type = lib.types.str; description = "The route's name at Google Cloud."; };
          config._type = "gce-route";
        };
      };
    };
}
