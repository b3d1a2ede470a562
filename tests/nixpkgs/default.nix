# A tiny stand-in for a nixpkgs package set: `lib`, `system`, trivial
# builders (writeText & co.) and a busybox "package", all built offline with
# /bin/busybox (no other inputs).
{ system ? builtins.currentSystem
, localSystem ? null
, crossSystem ? null
, config ? { }
, overlays ? [ ]
, ...
}:
let
  lib = import ./lib;
  system' =
    if localSystem == null then system
    else if builtins.isString localSystem then localSystem
    else localSystem.system or system;

  bbDrv = args: derivation ({ system = system'; builder = "/bin/busybox"; } // args);

  base = self: {
    inherit lib config overlays;
    system = system';
    path = ./.;
    pkgs = self;

    # bin/ with the busybox applets as symlinks to /bin/busybox.
    busybox = bbDrv {
      name = "busybox-stub";
      args = [ "sh" "-c" "/bin/busybox mkdir -p $out/bin && /bin/busybox --install -s $out/bin" ];
    };
    coreutils = self.busybox;
    inotify-tools = self.busybox;
    inotifyTools = self.busybox;

    writeTextFile = { name, text, executable ? false, destination ? "", ... }:
      bbDrv {
        inherit name text destination;
        executable = if executable then "1" else "";
        passAsFile = [ "text" ];
        args = [ "sh" "-c" ''
          set -e
          target="$out$destination"
          /bin/busybox mkdir -p "$(/bin/busybox dirname "$target")"
          /bin/busybox cp "$textPath" "$target"
          if [ -n "$executable" ]; then /bin/busybox chmod +x "$target"; fi
        '' ];
      };
    writeText = name: text: self.writeTextFile { inherit name text; };
    writeTextDir = path: text: self.writeTextFile {
      inherit text;
      name = builtins.baseNameOf path;
      destination = "/${path}";
    };
    writeScript = name: text: self.writeTextFile { inherit name text; executable = true; };
    writeScriptBin = name: text: self.writeTextFile {
      inherit name text;
      executable = true;
      destination = "/bin/${name}";
    };
    writeShellScript = name: text: self.writeScript name "#!/bin/busybox sh\n${text}";
    writeShellScriptBin = name: text:
      self.writeScriptBin name "#!/bin/busybox sh\n${text}";

    runCommand = name: env: buildCommand: bbDrv ({ inherit name; } // env // {
      args = [ "sh" "-c" "set -e; export PATH=${self.busybox}/bin; ${buildCommand}" ];
    });
    runCommandLocal = self.runCommand;

    hello = self.writeShellScriptBin "hello" "echo 'Hello, world!'";
  };

  extended = builtins.foldl' (f: overlay: lib.extends overlay f) base overlays;
in
lib.fix extended
