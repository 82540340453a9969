using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    /// <summary>`osd create` and `osd run` join the monitors' `osd` group (tree, watch, in, out).</summary>
    static partial void AddOsdCommands(RootCommand root) =>
        OsdCommands.AddTo(root.Subcommands.Single(c => c.Name == "osd"));
}
