mod a{}
mod serve;
