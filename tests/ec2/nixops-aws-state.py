"""Adds to a NixOps 2.0 state file what nixops-aws records when it has
created an EC2 instance and its key pair: run with the Python of the
NixOps 2.0 venv that has nixops-aws installed, so that the attributes are
set by nixops-aws' own state classes (their names, types and encodings).

    python nixops-aws-state.py STATE UUID SPEC-JSON

SPEC-JSON: {"keyPairs": {NAME: {attribute: value}}, "machines": {NAME:
{attribute: value}}}, attributes by the classes' Python names (vm_id,
public_ipv4, key_pair, ...), as the plugin's create() sets them."""

import json
import sys

import nixops.statefile
# In the order the plugin loads them (the types register themselves).
import nixops_aws.resources  # noqa: F401
import nixops_aws.backends.ec2  # noqa: F401
import nixops_aws.resources.ec2_keypair  # noqa: F401

state, uuid, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
depl = nixops.statefile.StateFile(state, writable=True).open_deployment(uuid)
index = 0
with depl._db:
    for kind, group in (("ec2-keypair", "keyPairs"), ("ec2", "machines")):
        for name, attrs in spec.get(group, {}).items():
            r = depl.resources.get(name) or depl._create_resource(name, kind)
            r.index = index
            index += 1
            for k, v in attrs.items():
                if k == "state":
                    v = getattr(r, v)
                setattr(r, k, v)
