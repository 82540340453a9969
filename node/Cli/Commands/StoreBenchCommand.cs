using System.CommandLine;
using System.Diagnostics;
using Appliance.Cli.Common;
using Appliance.Store;

namespace Appliance.Cli.Commands;

public static partial class StoreCommands
{
    /// <summary>`store bench DEV`: a short measurement on a mounted store — durable 4 KiB overwrites at QD1 and
    /// QD32. It writes into the collection "bench" (created and removed again). For the comparison with fio, use
    /// `Appliance.Bench store`.</summary>
    private static Command Bench()
    {
        var dev = DevArg();
        var seconds = new Option<double>("--seconds") { Description = "Length of each phase.", DefaultValueFactory = _ => 3 };
        var command = new Command("bench", "Measure durable 4 KiB overwrites at queue depth 1 and 32 on this store (writes a temporary collection).") { dev, seconds };
        command.SetAction((parse, ct) => WithStoreAsync(parse.GetRequiredValue(dev), async store =>
        {
            var o = parse.InvocationConfiguration.Output;
            var secs = parse.GetValue(seconds);
            const string coll = "bench.tmp";
            const int objects = 16;
            const int objectSize = 1 << 20;
            if (store.CollectionExists(coll))
            {
                // Left over by an interrupted run.
                var old = new Transaction();
                foreach (var leftover in store.List(coll, null, 100_000).Objects)
                {
                    old.Remove(coll, leftover.Id);
                }
                await store.SubmitAsync(old.RemoveCollection(coll), ct);
            }
            var setup = new Transaction().CreateCollection(coll);
            for (var i = 0; i < objects; i++)
            {
                setup.Write(coll, $"o{i}", 0, new byte[objectSize]);
            }
            await store.SubmitAsync(setup, ct);
            var block = new byte[4096];
            Random.Shared.NextBytes(block);
            foreach (var qd in new[] { 1, 32 })
            {
                var sw = Stopwatch.StartNew();
                long ops = 0;
                var workers = Enumerable.Range(0, qd).Select(async w =>
                {
                    var rng = new Random(w);
                    while (sw.Elapsed.TotalSeconds < secs && !ct.IsCancellationRequested)
                    {
                        await store.SubmitAsync(new Transaction().Write(coll, $"o{rng.Next(objects)}", rng.Next(objectSize / 4096) * 4096L, block), ct);
                        Interlocked.Increment(ref ops);
                    }
                });
                await Task.WhenAll(workers);
                o.WriteLine($"4 KiB durable overwrites QD{qd,-2}: {ops / sw.Elapsed.TotalSeconds,10:F0} IOPS");
            }
            var cleanup = new Transaction();
            for (var i = 0; i < objects; i++)
            {
                cleanup.Remove(coll, $"o{i}");
            }
            await store.SubmitAsync(cleanup.RemoveCollection(coll), ct);
            return ExitCodes.Ok;
        }));
        return command;
    }
}
