using System.CommandLine;
using Appliance.Cli.Commands;
using Appliance.Cli.Common;
using Appliance.Client;
using Appliance.Platform.Native;

namespace Appliance.Cli;

/// <summary>
/// Builds the command tree of the `appliance` program and runs it. This is the one place where exceptions become
/// messages and exit codes (see <see cref="ExitCodes"/>).
/// </summary>
public static partial class CliApp
{
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand(
            "appliance: a storage node. It manages raw disks with its own object store, joins peers in a cluster, " +
            "places data with CRUSH and serves pools as NBD block devices and FUSE mounts.\n" + ExitCodes.Summary);
        root.Subcommands.Add(PartsCommand.Create());
        root.Subcommands.Add(DeviceCommands.Create());
        // Each part adds its commands from a file of its own (CliApp.<Part>.cs), so parts never edit one shared list.
        AddCrushCommands(root);
        AddStoreCommands(root);
        AddBlockDevCommands(root);
        AddFsCommands(root);
        AddMonitorCommands(root);
        AddOsdCommands(root);
        AddClusterCommands(root);
        AddObjectCommands(root);
        AddDiskCommands(root);
        AddNodeCommands(root);
        return root;
    }

    static partial void AddCrushCommands(RootCommand root);

    static partial void AddStoreCommands(RootCommand root);

    static partial void AddBlockDevCommands(RootCommand root);

    static partial void AddFsCommands(RootCommand root);

    static partial void AddMonitorCommands(RootCommand root);

    static partial void AddOsdCommands(RootCommand root);

    static partial void AddClusterCommands(RootCommand root);

    static partial void AddObjectCommands(RootCommand root);

    static partial void AddDiskCommands(RootCommand root);

    static partial void AddNodeCommands(RootCommand root);

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct = default)
    {
        var root = BuildRoot();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await stderr.WriteLineAsync($"error: {error.Message}");
            }
            var path = CommandPath(parse);
            await stderr.WriteLineAsync($"Run '{path} --help' to see the usage.");
            return ExitCodes.Usage;
        }

        var config = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            // Exceptions come back to us so that they are mapped to exit codes in one place (below).
            EnableDefaultExceptionHandler = false,
        };
        try
        {
            return await parse.InvokeAsync(config, ct);
        }
        catch (Exception e) when (TryMap(e, out var code, out var message))
        {
            await stderr.WriteLineAsync($"error: {message}");
            return code;
        }
    }

    private static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Add(r.Command is RootCommand ? "appliance" : r.Command.Name);
        }
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>
    /// Maps the exceptions a user can cause or act on. Anything else is a bug: it is not caught here, so the
    /// runtime prints the trace and exits non-zero, which is what a bug report needs.
    /// </summary>
    private static bool TryMap(Exception e, out int code, out string message)
    {
        (code, message) = e switch
        {
            CliException c => (c.ExitCode, c.Message),
            OperationCanceledException => (ExitCodes.Interrupted, "interrupted"),
            PlatformNotFoundException p => (ExitCodes.NotFound, p.Message),
            PlatformAccessException p => (ExitCodes.PermissionDenied, p.Message + " (run as root, or fix the file's owner and mode)"),
            PlatformException p => (ExitCodes.Failure, p.Message),
            // The cluster client's errors (node/Client/ClientErrors.cs), whichever command met them.
            PoolNotFoundException p => (ExitCodes.NotFound, $"pool {p.Pool} does not exist; list pools with `appliance pool ls`"),
            ObjectNotFoundException o => (ExitCodes.NotFound, $"object {o.ObjectName} does not exist (PG {o.Pg}); list a pool's objects with `appliance object ls POOL`"),
            PermissionDeniedException d => (ExitCodes.PermissionDenied, $"{d.Message}; an administrator can grant it with `appliance auth caps ENTITY mon 'allow r' osd 'allow rw pool=POOL'`"),
            InvalidRequestException i => (ExitCodes.InvalidInput, i.Message),
            GuardFailedException g => (ExitCodes.Failure, $"object {g.ObjectName} was changed by another client while this command worked on it; run the command again"),
            QuotaExceededException q => (ExitCodes.Failure, $"{q.Message}; remove objects or raise the pool's quota with `appliance pool set POOL quota_max_bytes SIZE`"),
            ClusterFullException f => (ExitCodes.Failure, $"{f.Message}; add OSDs or remove data"),
            OsdRequestTimeoutException t => (ExitCodes.Failure, $"{t.Message}; see `appliance status` and `appliance osd tree` for OSDs down or PGs not active"),
            ClusterUnavailableException u => (ExitCodes.Failure, $"{u.Message}; check the monitors with `appliance mon status`"),
            ClusterClientException c => (ExitCodes.Failure, c.Message),
            _ => (0, ""),
        };
        return code != 0;
    }
}
