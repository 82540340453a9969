using System.Globalization;

namespace Appliance.Bench.Common;

/// <summary>Minimal `--name value` parsing for benchmarks (they are tools for us, not user commands).</summary>
public sealed class BenchArgs(string[] args)
{
    public string? Get(string name)
    {
        for (var i = 0; i < args.Length - 1; i++)
        {
            if (args[i] == name)
            {
                return args[i + 1];
            }
        }
        return null;
    }

    /// <summary>A switch without a value.</summary>
    public bool Has(string name) => args.Contains(name);

    public string Get(string name, string fallback) => Get(name) ?? fallback;

    public int Get(string name, int fallback) => Get(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public double Get(string name, double fallback) => Get(name) is { } v ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public long GetSize(string name, long fallback)
    {
        var v = Get(name);
        if (v is null)
        {
            return fallback;
        }
        var unit = char.ToUpperInvariant(v[^1]);
        var shift = unit switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => 0 };
        return long.Parse(shift == 0 ? v : v[..^1], CultureInfo.InvariantCulture) << shift;
    }
}
