namespace Appliance.Bench;

/// <summary>
/// One benchmark. It measures our figure and the reference tool's figure in the same run (the machines are shared
/// and noisy: only ratios from one run mean anything) and prints both and their ratio. Benchmarks are found by
/// reflection, so adding one is adding a file.
/// </summary>
public interface IBenchmark
{
    /// <summary>The name on the command line: `bench NAME [options]`.</summary>
    string Name { get; }

    /// <summary>One line for the list.</summary>
    string Description { get; }

    /// <summary>Runs it; returns the process exit code.</summary>
    Task<int> RunAsync(string[] args, CancellationToken ct);
}
