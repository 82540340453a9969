using Appliance.Platform.Devices;
using Appliance.Store;
using Appliance.Store.CrashWriter;

// The store's SIGKILL test writer: mounts DEVICE (a file with a store), continues the deterministic workload of
// SEED after the transaction the store holds, keeps INFLIGHT transactions in flight and prints "ACK n" on stdout
// (flushed) when transaction n is durable. It runs until killed.
if (args.Length == 4 && args[0] == "fill")
{
    return await Fill.RunAsync(args[1], long.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture),
        long.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
}
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Store.CrashWriter DEVICE SEED [INFLIGHT] [LARGE_WRITE]");
    return 2;
}
var seed = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
var inflight = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 8;
var large = args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 8 << 10;
await using var device = FileDevice.Open(args[0]);
await using var store = await ObjectStore.MountAsync(device, new StoreOptions { DeferredWriteMax = large });
var n = Workload.Marker(store);
var model = Workload.ModelAt(seed, n, large);
Console.Out.WriteLine($"START {n}");
Console.Out.Flush();
var window = new SemaphoreSlim(inflight);
var outLock = new Lock();
while (true)
{
    n++;
    var ops = Workload.Generate(seed, n, model, large);
    model.Apply(ops);
    await window.WaitAsync();
    var id = n;
    var task = store.SubmitAsync(Workload.ToTransaction(ops));
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
