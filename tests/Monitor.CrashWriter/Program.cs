using System.Globalization;
using Appliance.Monitor.CrashWriter;
using Appliance.Monitor.Storage;

// The monitor store's SIGKILL test writer: opens DIRECTORY, continues the deterministic workload of SEED after the
// batch the store holds, keeps INFLIGHT batches in flight (group commit) and prints "ACK n" on stdout (flushed) when
// batch n is durable. A small compaction threshold makes compactions happen under the kills. Runs until killed.
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Monitor.CrashWriter DIRECTORY SEED [INFLIGHT] [COMPACT_AFTER_BYTES]");
    return 2;
}
var seed = int.Parse(args[1], CultureInfo.InvariantCulture);
var inflight = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 8;
var compactAfter = args.Length > 3 ? long.Parse(args[3], CultureInfo.InvariantCulture) : 64 << 10;
using var store = MonitorStore.Open(args[0], new MonitorStoreOptions { CompactAfterLogBytes = compactAfter });
var n = Workload.Marker(store);
Console.Out.WriteLine($"START {n}");
Console.Out.Flush();
var window = new SemaphoreSlim(inflight);
var outLock = new Lock();
while (true)
{
    n++;
    await window.WaitAsync();
    var id = n;
    // ApplyAsync queues the batch before it returns, so batches commit in the order they were generated.
    var task = store.ApplyAsync(Workload.ToBatch(Workload.Generate(seed, n)));
    _ = task.ContinueWith(t =>
    {
        window.Release();
        lock (outLock)
        {
            Console.Out.WriteLine(t.IsCompletedSuccessfully ? $"ACK {id}" : $"FAIL {id} {t.Exception?.GetBaseException().Message}");
            Console.Out.Flush();
        }
    }, TaskScheduler.Default);
}
