# targetEnv "none": an existing machine, reached at deployment.targetHost.
# NixOps declares no options of its own for it.
{
  module = { };
  info = [ ];
}
