namespace Appliance.Cli.Common;

/// <summary>
/// Latencies in microseconds, counted in log-linear buckets (exact below 64 µs, then 32 buckets per power of two: a
/// percentile is within about 3% of the true value) so a benchmark records millions of operations in a fixed 10 KB
/// with no sorting. Safe for concurrent <see cref="Record"/>.
/// </summary>
public sealed class LatencyHistogram
{
    private const int Linear = 64;
    private const int SubBits = 5;
    private const int Sub = 1 << SubBits;
    // Values up to 2^62 µs: exponents 6..62 above the linear range.
    private readonly long[] _counts = new long[Linear + (63 - 6) * Sub];
    private long _total;

    public long Count => Interlocked.Read(ref _total);

    public void Record(long micros)
    {
        Interlocked.Increment(ref _counts[BucketOf(Math.Max(0, micros))]);
        Interlocked.Increment(ref _total);
    }

    /// <summary>The latency at or below which <paramref name="percent"/> % of the recorded ones are (the middle of its
    /// bucket), in microseconds; 0 when nothing was recorded.</summary>
    public double Percentile(double percent)
    {
        var total = Count;
        if (total == 0)
        {
            return 0;
        }
        var rank = Math.Max(1, (long)Math.Ceiling(total * Math.Clamp(percent, 0, 100) / 100));
        long seen = 0;
        for (var b = 0; b < _counts.Length; b++)
        {
            seen += Interlocked.Read(ref _counts[b]);
            if (seen >= rank)
            {
                var (low, width) = RangeOf(b);
                return low + (width - 1) / 2.0;
            }
        }
        return RangeOf(_counts.Length - 1).Low;
    }

    private static int BucketOf(long v)
    {
        if (v < Linear)
        {
            return (int)v;
        }
        var e = 63 - (int)long.LeadingZeroCount(v);
        return Linear + (e - 6) * Sub + (int)((v >> (e - SubBits)) & (Sub - 1));
    }

    private static (long Low, long Width) RangeOf(int bucket)
    {
        if (bucket < Linear)
        {
            return (bucket, 1);
        }
        var e = (bucket - Linear) / Sub + 6;
        var m = (bucket - Linear) % Sub;
        return ((long)(Sub + m) << (e - SubBits), 1L << (e - SubBits));
    }
}
