namespace Appliance.Cli.Common;

/// <summary>
/// A failure a command wants to report to the user as is: the message says what went wrong and what to do next.
/// Mapped to an exit code in exactly one place, <see cref="CliApp"/>.
/// </summary>
public sealed class CliException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
