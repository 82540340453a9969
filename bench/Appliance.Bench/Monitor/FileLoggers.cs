using Microsoft.Extensions.Logging;

namespace Appliance.Bench.Monitor;

/// <summary>A monitor's log lines appended to one file (a benchmark's monitors run as child processes whose stdout
/// is the benchmark's control channel).</summary>
internal sealed class FileLoggers(string path) : ILoggerFactory
{
    private readonly StreamWriter _file = new(path, append: true) { AutoFlush = true };

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
        lock (_file)
        {
            _file.Dispose();
        }
    }

    private sealed class Logger(FileLoggers owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            lock (owner._file)
            {
                owner._file.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
            }
        }
    }
}
