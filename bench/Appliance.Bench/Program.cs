using Appliance.Bench;

var benchmarks = typeof(IBenchmark).Assembly.GetTypes()
    .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IBenchmark).IsAssignableFrom(t))
    .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
    .OrderBy(b => b.Name, StringComparer.Ordinal)
    .ToList();

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: bench/run.sh NAME [options]   (or: dotnet run -c Release --project bench/Appliance.Bench -- NAME [options])");
    Console.WriteLine("benchmarks:");
    foreach (var b in benchmarks)
    {
        Console.WriteLine($"  {b.Name,-22} {b.Description}");
    }
    return args.Length == 0 ? 2 : 0;
}

var chosen = benchmarks.FirstOrDefault(b => b.Name == args[0]);
if (chosen is null)
{
    Console.Error.WriteLine($"error: no benchmark named '{args[0]}'; run with --help to list them.");
    return 2;
}
using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
return await chosen.RunAsync(args[1..], cts.Token);
