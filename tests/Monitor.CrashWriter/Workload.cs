using System.Globalization;
using Appliance.Monitor.Storage;

namespace Appliance.Monitor.CrashWriter;

/// <summary>
/// The deterministic batches of the crash test: batch n depends only on (seed, n). Each one writes a few keys across
/// prefixes, deletes some older ones, and records its own number under ("meta", "n"), so the store says which prefix
/// of the workload it holds and a test can compare the whole content with a model of exactly that prefix.
/// </summary>
public static class Workload
{
    public const string MetaPrefix = "meta";
    public const string CounterKey = "n";

    public static IReadOnlyList<BatchOp> Generate(int seed, long n)
    {
        var rng = new Random(unchecked((int)((seed * 0x9E3779B1L) ^ (n * 0x85EBCA77L) ^ (n >> 32))));  // not HashCode: it is randomised per process
        var ops = new List<BatchOp>();
        var count = rng.Next(1, 6);
        for (var i = 0; i < count; i++)
        {
            var prefix = "p" + rng.Next(4).ToString(CultureInfo.InvariantCulture);
            var key = "k" + rng.Next(64).ToString("D3", CultureInfo.InvariantCulture);
            if (rng.Next(5) == 0)
            {
                ops.Add(new BatchOp(prefix, key, null));
            }
            else
            {
                var value = new byte[rng.Next(0, rng.Next(8) == 0 ? 6000 : 200)];
                rng.NextBytes(value);
                ops.Add(new BatchOp(prefix, key, value));
            }
        }
        // A key per batch, so a batch half applied is visible even if its other keys were overwritten later.
        ops.Add(new BatchOp("batch", n.ToString("D10", CultureInfo.InvariantCulture), BitConverter.GetBytes(n)));
        if (n > 50)
        {
            ops.Add(new BatchOp("batch", (n - 50).ToString("D10", CultureInfo.InvariantCulture), null));
        }
        ops.Add(new BatchOp(MetaPrefix, CounterKey, BitConverter.GetBytes(n)));
        return ops;
    }

    public static WriteBatch ToBatch(IEnumerable<BatchOp> ops)
    {
        var b = new WriteBatch();
        foreach (var op in ops)
        {
            if (op.Value is null)
            {
                b.Delete(op.Prefix, op.Key);
            }
            else
            {
                b.Put(op.Prefix, op.Key, op.Value);
            }
        }
        return b;
    }

    /// <summary>The expected content: (prefix, key) → value, ordinal order.</summary>
    public static void ApplyToModel(SortedDictionary<(string Prefix, string Key), byte[]> model, IEnumerable<BatchOp> ops)
    {
        foreach (var op in ops)
        {
            if (op.Value is null)
            {
                model.Remove((op.Prefix, op.Key));
            }
            else
            {
                model[(op.Prefix, op.Key)] = op.Value;
            }
        }
    }

    public static IComparer<(string Prefix, string Key)> ModelOrder { get; } =
        Comparer<(string Prefix, string Key)>.Create((a, b) =>
        {
            var c = string.CompareOrdinal(a.Prefix, b.Prefix);
            return c != 0 ? c : string.CompareOrdinal(a.Key, b.Key);
        });

    /// <summary>The batch number the store holds (0 for an empty store).</summary>
    public static long Marker(MonitorStore store) =>
        store.Get(MetaPrefix, CounterKey) is { } v ? BitConverter.ToInt64(v) : 0;

    /// <summary>Everything the store holds, in the model's shape.</summary>
    public static SortedDictionary<(string Prefix, string Key), byte[]> Dump(MonitorStore store)
    {
        var all = new SortedDictionary<(string Prefix, string Key), byte[]>(ModelOrder);
        foreach (var prefix in store.Prefixes())
        {
            foreach (var (key, value) in store.List(prefix))
            {
                all[(prefix, key)] = value;
            }
        }
        return all;
    }
}
