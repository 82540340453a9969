namespace Appliance.Cli.Common;

/// <summary>
/// The exit codes of every `appliance` command. Documented in node/Cli/README.md and in `appliance --help`;
/// scripts depend on them, so a code keeps its meaning forever.
/// </summary>
public static class ExitCodes
{
    /// <summary>The command did what was asked.</summary>
    public const int Ok = 0;
    /// <summary>The command was understood but failed (an I/O error, corruption, a failed check).</summary>
    public const int Failure = 1;
    /// <summary>The command line is wrong: unknown subcommand or option, a missing or malformed argument.</summary>
    public const int Usage = 2;
    /// <summary>Something the command names does not exist (a file, a device, an image).</summary>
    public const int NotFound = 3;
    /// <summary>An input file exists but is malformed (for example a CRUSH map with a syntax error).</summary>
    public const int InvalidInput = 4;
    /// <summary>The command needs a permission it does not have (run as root, or fix the mode of a file).</summary>
    public const int PermissionDenied = 5;
    /// <summary>The command refused because it would destroy data it does not own (add --wipe or --force).</summary>
    public const int Refused = 6;
    /// <summary>Interrupted by SIGINT / Ctrl-C.</summary>
    public const int Interrupted = 130;

    /// <summary>One line per code, shown in the root help.</summary>
    public static readonly string Summary =
        "Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found, 4 invalid input, 5 permission denied, " +
        "6 refused (would destroy data; see the message), 130 interrupted.";
}
