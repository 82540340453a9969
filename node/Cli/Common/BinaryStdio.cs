namespace Appliance.Cli.Common;

/// <summary>
/// Standard input and output as bytes, for commands that move data (`object put`/`get` with -): the process's own
/// streams, or the ones a test gives for the calls it makes (<see cref="Redirect"/>; per async flow, so tests that
/// run side by side do not see each other's). The command's text writers stay for messages.
/// </summary>
public static class BinaryStdio
{
    private static readonly AsyncLocal<(Stream In, Stream Out)?> Redirected = new();

    /// <summary>Standard input (not to be disposed by the caller when redirected).</summary>
    public static Stream Input => Redirected.Value?.In ?? Console.OpenStandardInput();

    /// <summary>Standard output (not to be disposed by the caller when redirected).</summary>
    public static Stream Output => Redirected.Value?.Out ?? Console.OpenStandardOutput();

    /// <summary>Makes <see cref="Input"/> and <see cref="Output"/> these streams in this async flow and the ones it starts.</summary>
    public static void Redirect(Stream input, Stream output) => Redirected.Value = (input, output);
}
