using Appliance.Monitor.CrashWriter;
using Appliance.Monitor.Storage;

namespace Appliance.Monitor.Tests.Storage;

/// <summary>Builds stores from the crash workload and compares them with its model.</summary>
internal static class StoreTestKit
{
    public static MonitorStoreOptions NoAutoCompaction { get; } = new() { CompactAfterLogBytes = long.MaxValue / 2 };

    public static SortedDictionary<(string Prefix, string Key), byte[]> Model(int seed, long batches)
    {
        var model = new SortedDictionary<(string Prefix, string Key), byte[]>(Workload.ModelOrder);
        for (var n = 1L; n <= batches; n++)
        {
            Workload.ApplyToModel(model, Workload.Generate(seed, n));
        }
        return model;
    }

    /// <summary>Applies batches from..to of the workload.</summary>
    public static void Write(MonitorStore store, int seed, long from, long to)
    {
        for (var n = from; n <= to; n++)
        {
            store.Apply(Workload.ToBatch(Workload.Generate(seed, n)));
        }
    }

    public static void AssertHolds(MonitorStore store, int seed, long batches, string context)
    {
        Assert.Equal(batches, Workload.Marker(store));
        var expected = Model(seed, batches);
        var actual = Workload.Dump(store);
        var diffs = new List<string>();
        foreach (var (k, v) in expected)
        {
            if (!actual.TryGetValue(k, out var a))
            {
                diffs.Add($"missing {k}");
            }
            else if (!a.AsSpan().SequenceEqual(v))
            {
                diffs.Add($"wrong value at {k}");
            }
        }
        diffs.AddRange(actual.Keys.Where(k => !expected.ContainsKey(k)).Select(k => $"unexpected {k}"));
        Assert.True(diffs.Count == 0, $"{context}: store after batch {batches} differs from the model: {string.Join("; ", diffs.Take(10))}");
    }
}
