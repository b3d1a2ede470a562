# targetEnv "ec2": a machine NixOps' AWS plugin (nixops-aws) created in
# Amazon EC2, adopted from what state recorded of it. Declares what the
# plugin declares on every machine, with its names, types and defaults, so
# that EC2 networks evaluate unchanged: deployment.ec2.*, deployment.route53.*,
# fileSystems.<name>.ec2, and the deployment.autoLuks / deployment.autoRaid0
# options that NixOps 1.x had and that NixOps 2.0 installs beside the plugin
# (nixos-modules-contrib); and the plugin's resource types. Uses only
# nixpkgs' lib (and, for the options' defaults that need them, `pkgs.path`).
let
  # A reference to a resource of the network (`resources.ec2KeyPairs.kp`):
  # accepted where the plugin accepts one, by its `_type`.
  resourceOf = lib: kind: lib.mkOptionType {
    name = "resource of type ‘${kind}’";
    check = v: builtins.isAttrs v && (v._type or "") == kind;
    merge = lib.mergeOneOption;
  };

  # What an EBS volume (the resource, and a device of a machine) is made
  # of.
  volumeOptions = { config, lib, ... }: {
    options = {
      size = lib.mkOption {
        type = lib.types.int;
        example = 100;
        description = "Size of the volume in GiB (may be left out for a volume made from a snapshot: then the snapshot's).";
      };
      iops = lib.mkOption {
        type = lib.types.nullOr lib.types.int;
        default = null;
        description = "Provisioned IOPS of the volume.";
      };
      volumeType = lib.mkOption {
        type = lib.types.enum [ "standard" "io1" "io2" "gp2" "gp3" "st1" "sc1" ];
        default = if config.iops == null then "standard" else "io1";
        description = "EBS volume type (standard is magnetic; io1 when iops is set).";
      };
    };
  };

  # A device of deployment.ec2.blockDeviceMapping (and fileSystems.*.ec2).
  deviceOptions = { config, lib, ... }: {
    imports = [ volumeOptions ];
    options = {
      disk = lib.mkOption {
        type = lib.types.either lib.types.str (resourceOf lib "ebs-volume");
        default = "";
        example = "vol-00000000";
        apply = v: if builtins.isString v then v else "res-" + v._name;
        description = "What to attach: an ephemeral disk (ephemeral0), a snapshot (snap-...), a volume (vol-...), an ebsVolumes resource, or empty for a new volume.";
      };
      fsType = lib.mkOption {
        type = lib.types.str;
        default = "ext4";
        description = "File system of a volume made for the device.";
      };
      deleteOnTermination = lib.mkOption {
        type = lib.types.bool;
        description = "Whether a volume made for the device goes with the instance.";
      };
      encrypt = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Whether to encrypt the volume (LUKS, or EBS encryption; see encryptionType).";
      };
      encryptionType = lib.mkOption {
        type = lib.types.enum [ "luks" "ebs" ];
        default = "luks";
        description = "How the volume is encrypted: LUKS on the machine, or by EBS.";
      };
      cipher = lib.mkOption {
        type = lib.types.str;
        default = "aes-cbc-essiv:sha256";
        description = "LUKS cipher.";
      };
      keySize = lib.mkOption {
        type = lib.types.int;
        default = 128;
        description = "LUKS key size in bits.";
      };
      passphrase = lib.mkOption {
        type = lib.types.str;
        default = "";
        description = "LUKS passphrase; empty: one NixOps generated and keeps in state (which the physical spec gives back).";
      };
    };
    config = {
      size = lib.mkIf (config.disk != "") (lib.mkDefault 0);
      deleteOnTermination = lib.mkDefault (config.disk == "" || lib.hasPrefix "snap-" config.disk);
    };
  };

  tagsOption = lib: lib.mkOption {
    type = lib.types.attrsOf lib.types.str;
    default = { };
    example = { owner = "ops"; };
    description = "Tags of the AWS object.";
  };

  # What an instance type is, as far as the configuration cares: the
  # processors it has (nixpkgs.hostPlatform follows it). Graviton families
  # have a `g` after their generation (m6g, c7gn, t4g, x2gd, im4gn) and a1
  # is ARM too; mac families run macOS; the rest is x86_64.
  typeProperties = type:
    let
      family = builtins.head (builtins.split "[.]" type);
      arm = family == "a1" || builtins.match "[a-z]+[0-9]+g[a-z]*" family != null;
      mac = builtins.match "mac[0-9].*" family != null;
    in
    if type == "" || builtins.match "[a-z0-9-]+[.][a-z0-9-]+" type == null then { }
    else { platforms = [ ({ cpu = if arm then "aarch64" else "x86_64"; } // (if mac then { os = "darwin"; } else { })) ]; };

  module = { config, lib, pkgs, options, ... }:
    let
      inherit (lib) mkOption types mkIf mkDefault;
      cfg = config.deployment.ec2;
      str = description: default: mkOption { type = types.str; inherit default description; };
      bool = description: default: mkOption { type = types.bool; inherit default description; };
      int = description: default: mkOption { type = types.int; inherit default description; };
      # A resource, or its name / id as a string, as the plugin gives it
      # on: `prefix` + the resource's name (and `suffix`).
      refOr = kind: f: mkOption {
        type = types.either types.str (resourceOf lib kind);
        apply = v: if builtins.isString v then v else f v;
      };
      isEc2 = config.deployment.targetEnv == "ec2";
      # `/dev/mapper/xvdf` is the device `/dev/xvdf`.
      unmapped = dev: if lib.hasPrefix "/dev/mapper/" dev then "/dev/" + lib.removePrefix "/dev/mapper/" dev else dev;
      isHvm = !(builtins.elem (builtins.head (lib.splitString "." cfg.instanceType)) [ "c1" "hi1" "m1" "m2" "t1" ]);
      release = builtins.substring 0 5 (config.system.nixos.version or config.system.nixosVersion or "");
      # The AMI nixpkgs lists for the machine, where it lists them.
      ami =
        let
          amis = pkgs.path + "/nixos/modules/virtualisation/amazon-ec2-amis.nix";
          legacy = pkgs.path + "/nixos/modules/virtualisation/ec2-amis.nix";
          virt = (if isHvm then "hvm" else "pv") + (if cfg.ebsBoot then "-ebs" else "-s3");
          system = config.nixpkgs.hostPlatform.system or config.nixpkgs.system;
          none = what: throw "machine has no deployment.ec2.ami, and nixpkgs lists no AMI ${what}";
        in
        if builtins.pathExists amis then
          let
            byRelease = import amis;
            r = byRelease.${release} or byRelease.latest;
          in
          ((r.${cfg.region} or (none "in region ${cfg.region}")).${system} or (none "for ${system} in region ${cfg.region}")).${virt}
            or (none "of type ${virt} for ${system} in region ${cfg.region}")
        else if builtins.pathExists legacy then
          let byRelease = import legacy; in (byRelease.${release} or byRelease.latest).${cfg.region}.${virt}
        else none "(it has no amazon-ec2-amis.nix)";
      # The machine's CPU, from its instance type (the best of its
      # platforms: 64-bit first).
      hostSystem =
        let
          platforms = cfg.physicalProperties.platforms or [ ];
          rank = p: { x86_64 = 0; aarch64 = 0; i686 = 1; }.${p.cpu} or 1000;
          best = builtins.head (builtins.sort (a: b: rank a < rank b) platforms);
        in
        if platforms == [ ] then throw "deployment.ec2.instanceType ‘${cfg.instanceType}’ is no instance type this tool knows: set nixpkgs.hostPlatform"
        else if (best.os or "linux") != "linux" then throw "instance type ‘${cfg.instanceType}’ does not run Linux: set nixpkgs.hostPlatform"
        else best.cpu + "-linux";
      utils = config._module.args.utils or (throw "deployment.autoLuks / autoRaid0 need NixOS' `utils` module argument");
      luksUnit = name: v:
        let
          mapper = "/dev/mapper/${name}";
          mapperUnit = utils.escapeSystemdPath mapper + ".device";
          deviceUnit = utils.escapeSystemdPath v.device + ".device";
          key = config.deployment.keys."luks-${name}".path;
        in
        lib.nameValuePair "cryptsetup-${name}" {
          description = "Unlocking ${v.device} as ${mapper}";
          wantedBy = [ mapperUnit ];
          before = [ mapperUnit "mkfs-${utils.escapeSystemdPath mapper}.service" ];
          requires = [ deviceUnit "keys.target" ];
          after = [ deviceUnit "keys.target" ];
          path = [ pkgs.cryptsetup pkgs.util-linux or pkgs.utillinux ];
          unitConfig.DefaultDependencies = false;
          serviceConfig.Type = "oneshot";
          script = assert v.passphrase != ""; ''
            ${lib.optionalString v.autoFormat ''
              [ -e "${v.device}" ]
              fs=$(blkid -p -s TYPE -o value "${v.device}") || status=$?
              if [ -z "$fs" ] && [ -z "$status" -o "$status" = 2 ]; then
                echo "formatting ${v.device} for LUKS"
                cryptsetup luksFormat "${v.device}" --key-file=${key} --cipher ${v.cipher} --key-size ${toString v.keySize}
              fi
            ''}
            [ -e "${mapper}" ] || cryptsetup luksOpen "${v.device}" "${name}" --key-file=${key}
          '';
        };
      raidUnit = name: v:
        let
          dev = "/dev/${name}/${name}";
          devUnit = utils.escapeSystemdPath dev + ".device";
          parts = map (d: utils.escapeSystemdPath d + ".device") v.devices;
        in
        lib.nameValuePair "create-raid0-${name}" {
          description = "Striping ${toString v.devices} as ${dev}";
          wantedBy = [ devUnit ];
          before = [ devUnit "mkfs-${utils.escapeSystemdPath dev}.service" ];
          requires = parts;
          after = parts;
          path = [ pkgs.util-linux or pkgs.utillinux pkgs.lvm2 ];
          unitConfig.DefaultDependencies = false;
          serviceConfig.Type = "oneshot";
          script = ''
            for d in ${toString v.devices}; do
              [ -e "$d" ]
              fs=$(blkid -p -s TYPE -o value "$d") || status=$?
              if [ "$fs" = LVM2_member ]; then :
              elif [ -z "$fs" ] && [ -z "$status" -o "$status" = 2 ]; then pvcreate "$d"
              else echo "$d holds data; not using it for ${dev}"; exit 1; fi
            done
            vgs "${name}" || vgcreate "${name}" ${toString v.devices}
            lvs "${name}" | grep -q "${name}" || lvcreate "${name}" --name "${name}" --extents '100%FREE' --stripes ${toString (builtins.length v.devices)}
            vgchange -ay "${name}"
            [ -e "${dev}" ] || { echo "${dev} did not appear"; exit 1; }
          '';
        };
    in
    {
      _file = "<nixops>/backend ec2 (nixops-aws' options)";

      options = {
        deployment.ec2 = {
          accessKeyId = str "AWS access key id (empty: $EC2_ACCESS_KEY or $AWS_ACCESS_KEY_ID); the secret key is looked up in ~/.ec2-keys or ~/.aws/credentials." "";
          region = str "AWS region of the instance (it also picks the default AMI)." "";
          zone = str "Availability zone of the instance (empty: AWS chooses)." "";
          tenancy = mkOption {
            type = types.enum [ "default" "dedicated" "host" ];
            default = "default";
            description = "Tenancy of an instance in a VPC.";
          };
          ebsBoot = bool "Whether the instance boots from EBS (it picks the default AMI)." true;
          ebsInitialRootDiskSize = int "Size in GiB of the root disk of a new EBS-booted instance (0: the AMI's)." 0;
          ami = mkOption {
            type = types.str;
            example = "ami-00000000";
            description = "AMI the instance was made from (default: nixpkgs' NixOS AMI for the region).";
          };
          instanceType = str "EC2 instance type." "m1.small";
          instanceId = str "EC2 instance id (set by NixOps from state)." "";
          instanceProfile = str "IAM instance profile of the instance." "";
          keyPair = refOr "ec2-keypair" (v: v.name) // {
            example = "my-keypair";
            description = "SSH key pair the instance was made with: its name, or an ec2KeyPairs resource.";
          };
          privateKey = str "File of the private key of keyPair (empty: the ec2KeyPairs resource's, or ssh's own configuration)." "";
          securityGroups = mkOption {
            type = types.listOf (types.either types.str (resourceOf lib "ec2-security-group"));
            default = [ "default" ];
            apply = map (v: if builtins.isString v then v else v.name);
            description = "Security groups of the instance: names, or ec2SecurityGroups resources.";
          };
          securityGroupIds = mkOption {
            type = types.listOf types.str;
            default = [ "default" ];
            description = "Security group ids of an instance in a VPC.";
          };
          subnetId = refOr "vpc-subnet" (v: "res-" + v._name + "." + v._type) // {
            default = "";
            description = "VPC subnet of the instance: its id, or a vpcSubnets resource.";
          };
          associatePublicIpAddress = bool "Whether an instance in a VPC gets a public address." false;
          usePrivateIpAddress = bool "Whether ssh reaches the instance at its private address (default: in a subnet without a public address)."
            (!cfg.associatePublicIpAddress && cfg.subnetId != "");
          sourceDestCheck = bool "Whether an instance in a VPC has the source/destination check." true;
          placementGroup = refOr "ec2-placement-group" (v: v.name) // {
            default = "";
            description = "Placement group of the instance: its name, or an ec2PlacementGroups resource.";
          };
          tags = tagsOption lib;
          blockDeviceMapping = mkOption {
            type = types.attrsOf (types.submodule deviceOptions);
            default = { };
            example = { "/dev/xvdb".disk = "ephemeral0"; };
            description = "Devices attached to the instance, by device name (/dev/xvdf and up for EBS, /dev/nvmeNn1 on NVMe instance types).";
          };
          elasticIPv4 = refOr "elastic-ip" (v: "res-" + v._name) // {
            default = "";
            description = "Elastic IP of the instance: the address, or an elasticIPs resource.";
          };
          physicalProperties = mkOption {
            type = types.attrsOf (types.oneOf [ types.int types.str types.bool (types.listOf (types.attrsOf types.str)) ]);
            default = { };
            description = "What the instance type provides (its platforms).";
          };
          spotInstancePrice = int "Spot price in cents per hour (0: no spot instance)." 0;
          spotInstanceRequestType = mkOption {
            type = types.enum [ "one-time" "persistent" ];
            default = "one-time";
            description = "Kind of spot request.";
          };
          spotInstanceInterruptionBehavior = mkOption {
            type = types.enum [ "terminate" "stop" "hibernate" ];
            default = "terminate";
            description = "What an interrupted spot instance does.";
          };
          spotInstanceTimeout = int "Seconds a spot request may wait (0: for ever)." 0;
          ebsOptimized = bool "Whether the instance is EBS-optimized (default: where its type allows)."
            (cfg.physicalProperties.allowsEbsOptimized or false);
        };

        deployment.route53 = {
          accessKeyId = str "AWS access key id for Route 53 (empty: as for EC2)." "";
          hostName = str "DNS name bound to the instance's address." "";
          ttl = int "TTL of that record." 300;
          usePublicDNSName = bool "Whether the record is a CNAME of the instance's public DNS name." false;
          private = bool "Whether the record holds the private address." false;
        };

        fileSystems = mkOption {
          type = types.attrsOf (types.submodule {
            options.ec2 = mkOption {
              type = types.nullOr (types.submodule deviceOptions);
              default = null;
              description = "The EC2 device of this file system (a shorthand for deployment.ec2.blockDeviceMapping).";
            };
          });
        };

        deployment.autoLuks = mkOption {
          type = types.attrsOf (types.submodule {
            options = {
              device = mkOption { type = types.str; example = "/dev/xvdg"; description = "The encrypted device."; };
              cipher = str "Cipher." "aes-cbc-essiv:sha256";
              keySize = int "Key size in bits." 128;
              passphrase = str "Passphrase (sent as key luks-NAME)." "";
              autoFormat = bool "Whether an empty device is formatted for LUKS." false;
            };
          });
          default = { };
          description = "LUKS devices opened at boot as /dev/mapper/NAME.";
        };

        deployment.autoRaid0 = mkOption {
          type = types.attrsOf (types.submodule {
            options.devices = mkOption { type = types.listOf types.str; example = [ "/dev/xvdg" "/dev/xvdh" ]; description = "Devices striped together."; };
          });
          default = { };
          description = "Devices striped into the LVM volume /dev/NAME/NAME.";
        };
      };

      config = lib.mkMerge [
        {
          systemd.services = lib.mapAttrs' luksUnit config.deployment.autoLuks // lib.mapAttrs' raidUnit config.deployment.autoRaid0;
          deployment.keys = lib.mapAttrs' (name: v: lib.nameValuePair "luks-${name}" { text = v.passphrase; }) config.deployment.autoLuks;
        }
        (mkIf isEc2 {
          nixpkgs.${if options ? nixpkgs.hostPlatform then "hostPlatform" else "system"} = lib.mkOverride 900 hostSystem;
          deployment.ec2.ami = mkDefault ami;
          fileSystems = { };
          deployment.ec2.blockDeviceMapping = lib.listToAttrs (map
            (fs: lib.nameValuePair (unmapped fs.device) {
              inherit (fs.ec2) disk size deleteOnTermination encrypt encryptionType cipher keySize passphrase iops volumeType;
              fsType = if fs.fsType != "auto" then fs.fsType else fs.ec2.fsType;
            })
            (builtins.filter (fs: fs.ec2 != null) (builtins.attrValues config.fileSystems)));
          deployment.autoLuks = lib.mapAttrs'
            (dev: v: lib.nameValuePair (baseNameOf dev) {
              device = "/dev/${baseNameOf dev}";
              autoFormat = true;
              inherit (v) cipher keySize passphrase;
            })
            (lib.filterAttrs (_: v: v.encrypt) cfg.blockDeviceMapping);
          deployment.ec2.physicalProperties = typeProperties cfg.instanceType;
        })
      ];
    };

  # The plugin's resource types. `_type` is what references check.
  resources =
    let
      common = kind: extra: { config, lib, uuid, name, ... }: {
        options = {
          accessKeyId = lib.mkOption { type = lib.types.str; default = ""; description = "AWS access key id."; };
        } // extra { inherit config lib uuid name; };
        config = lib.optionalAttrs (kind != null) { _type = kind; };
      };
      o = lib: type: default: description: lib.mkOption ({ inherit type description; } // (if default == null then { } else { inherit default; }));
      # No default (the option must be given).
      req = lib: type: description: lib.mkOption { inherit type description; };
      named = lib: prefix: uuid: name: what: o lib lib.types.str "${prefix}-${uuid}-${name}" "Name of the ${what}.";
      ref = lib: kind: suffix: lib.mkOption {
        type = lib.types.either lib.types.str (resourceOf lib kind);
        apply = v: if builtins.isString v then v else "res-" + v._name + suffix v;
        description = "A ${kind}: its id, or the resource.";
      };
      nullRef = lib: kind: suffix: lib.mkOption {
        type = lib.types.nullOr (lib.types.either lib.types.str (resourceOf lib kind));
        default = null;
        apply = v: if v == null || builtins.isString v then v else "res-" + v._name + suffix v;
        description = "A ${kind}: its id, or the resource.";
      };
      typed = v: "." + v._type;
      plain = _: "";
      # The types real networks use, with their options; the others are
      # kept as they are given (with their `_type`).
      loose = kind: { lib, ... }: { freeformType = lib.types.lazyAttrsOf lib.types.anything; config._type = kind; };
    in
    {
      ec2KeyPairs = common "ec2-keypair" ({ lib, uuid, name, ... }: {
        name = named lib "charon" uuid name "EC2 key pair";
        region = req lib lib.types.str "AWS region.";
      });
      ebsVolumes = { config, lib, uuid, name, ... }: {
        imports = [ volumeOptions (common "ebs-volume" ({ lib, ... }: {
          region = req lib lib.types.str "AWS region.";
          zone = req lib lib.types.str "Availability zone of the volume.";
          volumeId = o lib lib.types.str "" "An existing volume to adopt.";
          snapshot = o lib lib.types.str "" "Snapshot the volume is made from.";
          tags = tagsOption lib;
        })) ];
        config.size = lib.mkIf (config.snapshot != "" || config.volumeId != "") (lib.mkDefault 0);
      };
      elasticIPs = common "elastic-ip" ({ lib, ... }: {
        region = req lib lib.types.str "AWS region.";
        # NixOps gives the address back from state.
        address = o lib lib.types.str "_UNKNOWN_ELASTIC_IP_" "The address (set from state).";
        vpc = o lib lib.types.bool false "Whether the address is for instances in a VPC.";
      });
      ec2SecurityGroups = common "ec2-security-group" ({ lib, uuid, name, ... }: {
        name = named lib "charon" uuid name "security group";
        description = o lib lib.types.str "NixOps-provisioned group ${name}" "Description of the group.";
        region = req lib lib.types.str "AWS region.";
        groupId = o lib (lib.types.uniq (lib.types.nullOr lib.types.str)) null "Id of the group (set from state)." // { default = null; };
        vpcId = nullRef lib "vpc" typed;
        rules = lib.mkOption {
          type = lib.types.listOf (lib.types.submodule ({ ... }: {
            options = {
              protocol = o lib lib.types.str "tcp" "Protocol (tcp, udp, icmp).";
              fromPort = o lib (lib.types.uniq (lib.types.nullOr lib.types.int)) null "First port." // { default = null; };
              toPort = o lib (lib.types.uniq (lib.types.nullOr lib.types.int)) null "Last port." // { default = null; };
              typeNumber = o lib (lib.types.uniq (lib.types.nullOr lib.types.int)) null "ICMP type." // { default = null; };
              codeNumber = o lib (lib.types.uniq (lib.types.nullOr lib.types.int)) null "ICMP code." // { default = null; };
              sourceGroup.ownerId = o lib (lib.types.uniq (lib.types.nullOr lib.types.str)) null "Account of the source group." // { default = null; };
              sourceGroup.groupName = o lib (lib.types.uniq (lib.types.nullOr lib.types.str)) null "Name of the source group." // { default = null; };
              sourceIp = lib.mkOption {
                type = lib.types.uniq (lib.types.nullOr (lib.types.either lib.types.str (resourceOf lib "elastic-ip")));
                default = null;
                apply = v: if v == null || builtins.isString v then v else "res-" + v._name;
                description = "Source CIDR, or an elasticIPs resource.";
              };
            };
          }));
          default = [ ];
          description = "The group's rules.";
        };
      });
      ec2PlacementGroups = common "ec2-placement-group" ({ lib, uuid, name, ... }: {
        name = named lib "charon" uuid name "placement group";
        strategy = o lib lib.types.str "cluster" "Placement strategy.";
        region = req lib lib.types.str "AWS region.";
      });
      iamRoles = common null ({ lib, uuid, name, ... }: {
        name = named lib "charon" uuid name "IAM role";
        policy = req lib lib.types.str "The role's policy (JSON).";
        assumeRolePolicy = o lib lib.types.str "" "The AssumeRole policy (JSON; empty: the existing one).";
        tags = tagsOption lib;
      });
      s3Buckets = common null ({ config, lib, uuid, name, ... }: {
        name = named lib "charon" uuid name "S3 bucket";
        region = req lib lib.types.str "AWS region.";
        arn = o lib lib.types.str "arn:aws:s3:::${config.name}" "ARN of the bucket.";
        policy = o lib lib.types.str "" "Bucket policy (JSON).";
        lifeCycle = o lib lib.types.str "" "Lifecycle configuration (JSON).";
        versioning = o lib (lib.types.enum [ "Suspended" "Enabled" ]) "Suspended" "Versioning.";
        persistOnDestroy = o lib lib.types.bool false "Whether destroy keeps the bucket.";
        website.enabled = o lib lib.types.bool false "Whether the bucket is a website.";
        website.suffix = o lib lib.types.str "index.html" "Index document.";
        website.errorDocument = o lib lib.types.str "" "Error document.";
      });
      route53RecordSets = common null ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "record set";
        zoneId = nullRef lib "route53-hosted-zone" plain;
        zoneName = o lib (lib.types.nullOr lib.types.str) null "Name of the hosted zone." // { default = null; };
        domainName = req lib lib.types.str "The record's domain name.";
        ttl = o lib lib.types.int 300 "TTL.";
        routingPolicy = o lib (lib.types.enum [ "simple" "weighted" "multivalue" ]) "simple" "Routing policy.";
        recordType = o lib (lib.types.enum [ "A" "AAAA" "TXT" "CNAME" "MX" "NAPT" "PTR" "SRV" "SPF" ]) "A" "Record type.";
        recordValues = lib.mkOption {
          type = lib.types.listOf (lib.types.either lib.types.str (lib.types.either (resourceOf lib "machine") (resourceOf lib "elastic-ip")));
          apply = map (v: if builtins.isString v || v == null then v else "res-" + v._name);
          description = "The record's values: strings, machines or elasticIPs resources.";
        };
        setIdentifier = o lib lib.types.str "" "Set identifier (weighted and multivalue routing).";
        weight = o lib lib.types.int 0 "Weight (weighted routing).";
        healthCheckId = lib.mkOption {
          type = lib.types.either lib.types.str (resourceOf lib "route53-health-check");
          default = "";
          apply = v: if builtins.isString v || v == null then v else "res-" + v._name;
          description = "Health check: its id, or a route53HealthChecks resource.";
        };
      });
      vpc = common "vpc" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "VPC";
        region = req lib lib.types.str "AWS region.";
        cidrBlock = req lib lib.types.str "CIDR block of the VPC.";
        instanceTenancy = o lib lib.types.str "default" "Tenancy of its instances.";
        enableDnsSupport = o lib lib.types.bool false "Whether DNS resolution is on.";
        enableDnsHostnames = o lib lib.types.bool false "Whether instances get DNS host names.";
        enableClassicLink = o lib lib.types.bool false "Whether ClassicLink is on.";
        amazonProvidedIpv6CidrBlock = o lib lib.types.bool false "Whether AWS assigns an IPv6 block.";
        vpcId = o lib lib.types.str "" "Id of the VPC (set from state).";
        tags = tagsOption lib;
      });
      vpcSubnets = common "vpc-subnet" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "subnet";
        region = req lib lib.types.str "AWS region.";
        vpcId = ref lib "vpc" typed;
        cidrBlock = req lib lib.types.str "CIDR block of the subnet.";
        ipv6CidrBlock = o lib (lib.types.nullOr lib.types.str) null "IPv6 block of the subnet." // { default = null; };
        zone = req lib lib.types.str "Availability zone of the subnet.";
        mapPublicIpOnLaunch = o lib lib.types.bool false "Whether instances get public addresses.";
        subnetId = o lib lib.types.str "" "Id of the subnet (set from state).";
        tags = tagsOption lib;
      });
      vpcInternetGateways = common "vpc-internet-gateway" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "internet gateway";
        region = req lib lib.types.str "AWS region.";
        vpcId = ref lib "vpc" typed;
        tags = tagsOption lib;
      });
      vpcRouteTables = common "vpc-route-table" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "route table";
        region = req lib lib.types.str "AWS region.";
        vpcId = ref lib "vpc" typed;
        propagatingVgws = lib.mkOption {
          type = lib.types.listOf (lib.types.either lib.types.str (resourceOf lib "aws-vpn-gateway"));
          default = [ ];
          apply = map (v: if builtins.isString v then v else "res-" + v._name + "." + v._type + ".vpnGatewayId");
          description = "VPN gateways that propagate routes into the table.";
        };
        tags = tagsOption lib;
      });
      vpcRouteTableAssociations = common "vpc-route-table-association" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "association";
        region = req lib lib.types.str "AWS region.";
        subnetId = ref lib "vpc-subnet" typed;
        routeTableId = ref lib "vpc-route-table" typed;
      });
      vpcRoutes = common "vpc-route" ({ lib, uuid, name, ... }: {
        name = named lib "nixops" uuid name "route";
        region = req lib lib.types.str "AWS region.";
        routeTableId = ref lib "vpc-route-table" typed;
        destinationCidrBlock = o lib (lib.types.nullOr lib.types.str) null "IPv4 destination." // { default = null; };
        destinationIpv6CidrBlock = o lib (lib.types.nullOr lib.types.str) null "IPv6 destination." // { default = null; };
        gatewayId = nullRef lib "vpc-internet-gateway" (v: typed v + ".internetGatewayId");
        egressOnlyInternetGatewayId = nullRef lib "vpc-egress-only-internet-gateway" (v: typed v + ".egressOnlyInternetGatewayId");
        instanceId = lib.mkOption {
          type = lib.types.nullOr (lib.types.either lib.types.str (lib.mkOptionType { name = "EC2 machine"; check = v: v ? ec2; merge = lib.mergeOneOption; }));
          default = null;
          apply = v: if v == null || builtins.isString v then v else "res-" + v._name + ".ec2.vm_id";
          description = "An instance: its id, or an EC2 machine.";
        };
        natGatewayId = nullRef lib "vpc-nat-gateway" typed;
        networkInterfaceId = nullRef lib "vpc-network-interface" typed;
      });
      vpcNatGateways = loose "vpc-nat-gateway";
      vpcEgressOnlyInternetGateways = loose "vpc-egress-only-internet-gateway";
      vpcDhcpOptions = loose "vpc-dhcp-options";
      vpcNetworkAcls = loose "vpc-network-acl";
      vpcNetworkInterfaces = loose "vpc-network-interface";
      vpcNetworkInterfaceAttachments = loose "vpc-network-interface-attachment";
      vpcCustomerGateways = loose "vpc-customer-gateway";
      vpcEndpoints = loose "vpc-endpoint";
      route53HostedZones = loose "route53-hosted-zone";
      route53HealthChecks = loose "route53-health-check";
      snsTopics = loose "sns-topic";
      sqsQueues = loose "sqs-queue";
      rdsDbInstances = loose "ec2-rds-dbinstance";
      rdsSubnetGroups = loose "rds-subnet-group";
      rdsDbSecurityGroups = loose "ec2-rds-dbsecurity-group";
      elasticFileSystems = loose "elastic-file-system";
      elasticFileSystemMountTargets = loose "elastic-file-system-mount-target";
      cloudwatchLogGroups = loose "cloudwatch-log-group";
      cloudwatchLogStreams = loose "cloudwatch-log-stream";
      cloudwatchMetricAlarms = loose "cloudwatch-metric-alarm";
      awsVPNGateways = loose "aws-vpn-gateway";
      awsVPNConnections = loose "aws-vpn-connection";
      awsVPNConnectionRoutes = loose "aws-vpn-connection-route";
      awsDataLifecycleManager = loose "aws-data-lifecycle-manager";
    };
in
{
  inherit module resources;
  # What the tool reads of an EC2 machine's options (MachineInfo::backend):
  # what reaching it needs, and what state recorded of it that only the
  # AWS API could change. Block devices by name only (a passphrase is
  # secret).
  info = ec2: {
    inherit (ec2) region zone instanceType keyPair privateKey usePrivateIpAddress
      securityGroups elasticIPv4 placementGroup instanceProfile subnetId tenancy
      ebsInitialRootDiskSize spotInstancePrice;
    devices = builtins.attrNames ec2.blockDeviceMapping;
  };
}
